// Runs the sparsetrain binary as a child process and captures its exit code, stdout and stderr,
// for CLI tests that check what a user sees.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sparsetrain::test {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed
  std::string out;
  std::string err;
};

inline std::string drain(int fd) {
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return text;
}

// Runs `binary args...`; stdout and stderr go to temporary files so large output cannot deadlock.
inline ProcessResult run_process(const std::string& binary, const std::vector<std::string>& args) {
  char out_path[] = "/tmp/st-out-XXXXXX";
  char err_path[] = "/tmp/st-err-XXXXXX";
  const int out_fd = ::mkstemp(out_path);
  const int err_fd = ::mkstemp(err_path);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    ::dup2(null_fd, STDIN_FILENO);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(binary.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ProcessResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  ::lseek(out_fd, 0, SEEK_SET);
  ::lseek(err_fd, 0, SEEK_SET);
  result.out = drain(out_fd);
  result.err = drain(err_fd);
  ::unlink(out_path);
  ::unlink(err_path);
  return result;
}

inline ProcessResult run_sparsetrain(const std::vector<std::string>& args) {
  return run_process(SPARSETRAIN_BINARY, args);
}

// Starts `binary args...` in the background with `env` added to its environment; stdout to
// /dev/null, stderr to `err_path` (none: /dev/null). Returns its pid (wait_process reaps it).
inline pid_t start_process(const std::string& binary, const std::vector<std::string>& args,
                           const std::vector<std::pair<std::string, std::string>>& env = {},
                           const std::string& err_path = {}) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    const int null_fd = ::open("/dev/null", O_WRONLY);
    const int err_fd =
        err_path.empty() ? null_fd : ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(null_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    std::vector<char*> argv{const_cast<char*>(binary.c_str())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

inline pid_t start_sparsetrain(const std::vector<std::string>& args,
                               const std::vector<std::pair<std::string, std::string>>& env = {},
                               const std::string& err_path = {}) {
  return start_process(SPARSETRAIN_BINARY, args, env, err_path);
}

// Waits up to `seconds` for `pid` to end: its exit code (128 + signal), or -1 when it did not end
// in time (it is then killed and reaped).
inline int wait_process(pid_t pid, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

}  // namespace sparsetrain::test
