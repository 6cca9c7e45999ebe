// The ranks of `fuyou finetune` (see fuyou_ranks.h).
#include "fuyou_ranks.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/error.h"
#include "common/log.h"
#include "common/progress.h"

namespace sparsetrain::cli {

namespace {

// Set in the ranks --nproc spawns: they run, they do not spawn again.
constexpr const char* kLocalRanksVar = "SPARSETRAIN_LOCAL_RANKS";

// This process's argv, as the kernel has it.
std::vector<std::string> own_args() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string arg; std::getline(in, arg, '\0');) args.push_back(arg);
  return args;
}

// A loopback TCP port free now (the kernel's choice), for the ranks' rendezvous.
int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    throw common::EnvironmentError(
        "cannot open a socket for the ranks' rendezvous: " + common::errno_text(errno),
        "run the ranks with torchrun and a MASTER_PORT instead");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int err = errno;
    ::close(fd);
    throw common::EnvironmentError("cannot bind a loopback port: " + common::errno_text(err),
                                   "run the ranks with torchrun and a MASTER_PORT instead");
  }
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

// The record path of rank `rank` beside `out`: run.json -> run.rank1.json.
std::string rank_record_path(const std::string& out, int rank) {
  const std::string suffix = ".rank" + std::to_string(rank);
  const std::size_t dot = out.rfind('.');
  const std::size_t slash = out.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return out + suffix;
  return out.substr(0, dot) + suffix + out.substr(dot);
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

void add_rank_flags(CLI::App& sub, RankFlags& flags) {
  const std::string kRanks = "Data parallel (ranks from torchrun, srun, mpirun or --nproc)";
  sub.add_option("--nproc", flags.nproc, "Spawn this many ranks on this machine (loopback)")
      ->check(CLI::Range(1, 1024))
      ->group(kRanks);
  sub.add_option("--dist-backend", flags.backend, "c10d process group of the ranks")->group(kRanks);
  sub.add_option("--dist-timeout", flags.timeout_s,
                 "Seconds the rendezvous and each collective wait for the other ranks")
      ->check(CLI::PositiveNumber)
      ->group(kRanks);
  sub.add_option("--log-ranks", flags.log_ranks, "Which ranks log and show progress")
      ->check(CLI::IsMember({"0", "all"}))
      ->group(kRanks);
}

bool spawns_local_ranks(const RankFlags& flags) {
  // A rank this launcher started sees --nproc again (its command line, or a --config file).
  return flags.nproc > 1 && std::getenv(kLocalRanksVar) == nullptr;
}

void run_local_ranks(const RankFlags& flags, CommandContext& context) {
  if (fuyou::world_from_env().distributed()) {
    throw common::UsageError("--nproc inside a launched rank (RANK/WORLD_SIZE are set)",
                             "let one launcher start the ranks: drop --nproc, or run without "
                             "torchrun/srun");
  }
  context.record_path.clear();  // the ranks write the records
  std::vector<std::string> args;
  const std::vector<std::string> own = own_args();
  for (std::size_t i = 0; i < own.size(); ++i) {
    if (own[i] == "--nproc") {
      ++i;  // and its value
    } else if (own[i].rfind("--nproc=", 0) != 0) {
      args.push_back(own[i]);
    }
  }
  const int port = free_loopback_port();
  common::log_info("fuyou finetune: ", flags.nproc,
                   " ranks on this machine (Gloo over 127.0.0.1:", port, ")");
  std::vector<pid_t> pids;
  for (int r = 0; r < flags.nproc; ++r) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    for (const auto& [name, value] : fuyou::local_rank_env(r, flags.nproc, port))
      env.push_back(name + "=" + value);
    env.push_back(std::string(kLocalRanksVar) + "=" + std::to_string(flags.nproc));
    std::vector<char*> argv, envp;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (std::string& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      for (pid_t p : pids) ::kill(p, SIGTERM);
      throw common::EnvironmentError("cannot start rank " + std::to_string(r) + ": " +
                                     common::errno_text(errno));
    }
    if (pid == 0) {
      ::execve("/proc/self/exe", argv.data(), envp.data());
      std::_Exit(127);
    }
    pids.push_back(pid);
  }
  // Wait for every rank; the first failure (or an interrupt here) stops the rest.
  int first_failed = -1, first_code = 0;
  bool stopping = false;
  std::size_t running = pids.size();
  while (running > 0) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      --running;
      const int code = exit_code_of(status);
      const auto rank = static_cast<int>(std::find(pids.begin(), pids.end(), pid) - pids.begin());
      if (rank < static_cast<int>(pids.size())) pids[static_cast<std::size_t>(rank)] = -1;
      if (code != 0 && first_failed < 0) {
        first_failed = rank;
        first_code = code;
      }
      continue;
    }
    if (!stopping && (first_failed >= 0 || common::interrupt_requested())) {
      stopping = true;
      for (pid_t p : pids)
        if (p > 0) ::kill(p, SIGTERM);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (first_failed >= 0) {
    throw common::Error(
        static_cast<common::ExitCode>(first_code),
        "rank " + std::to_string(first_failed) + " of " + std::to_string(flags.nproc) +
            " failed (exit " + std::to_string(first_code) + "); the others were stopped",
        first_code == static_cast<int>(common::ExitCode::kRunFailed) || first_code > 128
            ? "its error is above; --resume continues every rank from the last "
              "committed step"
            : "its error is above");
  }
  if (common::interrupt_requested()) throw common::InterruptedError();
}

JoinedRanks join_ranks(const RankFlags& flags, CommandContext& context) {
  JoinedRanks out;
  out.world = fuyou::world_from_env();
  if (!out.world.distributed()) return out;
  const int rank = out.world.rank;
  if (rank > 0 && flags.log_ranks == "0") {  // warnings and errors still
    if (common::log_enabled(common::LogLevel::kInfo))
      common::set_log_level(common::LogLevel::kWarn);
    common::set_progress_mode(common::ProgressMode::kNever);
  }
  if (rank > 0 && !context.record_path.empty() && context.record_path != "-") {
    context.record_path = rank_record_path(context.record_path, rank);
  } else if (rank > 0) {
    context.record_path.clear();  // stdout is rank 0's
  }
  fuyou::RankGroupOptions options;
  options.backend = flags.backend;
  options.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(flags.timeout_s * 1000));
  out.group = fuyou::RankGroup::connect(out.world, options);
  std::string command_line;
  for (const std::string& arg : own_args()) command_line += arg + '\0';
  out.group->check_same("command line", command_line);
  nlohmann::json& metrics = context.record.metrics();
  metrics["rank"] = rank;
  metrics["world_size"] = out.world.size;
  common::log_info("fuyou finetune: rank ", rank, " of ", out.world.size, " joined through ",
                   out.world.master_addr, ":", out.world.master_port, " (", flags.backend, ")");
  return out;
}

void merge_rank_records(const JoinedRanks& ranks, CommandContext& context) {
  if (!ranks.group) return;
  const std::vector<std::string> all =
      ranks.group->gather_to_first("metrics", context.record.metrics().dump());
  if (all.empty()) return;
  nlohmann::json merged = nlohmann::json::array();
  for (const std::string& text : all) merged.push_back(nlohmann::json::parse(text));
  context.record.metrics()["ranks"] = std::move(merged);
}

}  // namespace sparsetrain::cli
