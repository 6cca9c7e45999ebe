// Errors: the two tiers of the house style.
//  - Caller errors (bad flags, bad files, full disks, missing CUDA) are exceptions derived from
//    `Error`, each carrying a one-line message, an optional hint and the exit code `main` maps
//    it to.
//  - Internal bugs are `ST_ASSERT` failures: an `InternalError` (exit 70) with file:line.
// Library code throws and never prints or exits; apps/sparsetrain/main.cpp catches once.
#pragma once

#include <stdexcept>
#include <string>

namespace sparsetrain::common {

// Exit codes (STYLE.md).
// 0 ok · 1 run failed · 2 usage/config · 3 environment · 70 bug · 130 SIGINT.
enum class ExitCode : int {
  kOk = 0,
  kRunFailed = 1,
  kUsage = 2,
  kEnvironment = 3,
  kInternal = 70,
  kInterrupted = 130,
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, std::string message, std::string hint = {})
      : std::runtime_error(std::move(message)), code_(code), hint_(std::move(hint)) {}
  ExitCode code() const { return code_; }
  const std::string& hint() const { return hint_; }

 private:
  ExitCode code_;
  std::string hint_;
};

// Bad flags, bad config, malformed input files: nothing was run (exit 2).
struct UsageError : Error {
  explicit UsageError(std::string message, std::string hint = {})
      : Error(ExitCode::kUsage, std::move(message), std::move(hint)) {}
};

// The run started and failed: I/O error, disk full, diverged training (exit 1).
struct RunError : Error {
  explicit RunError(std::string message, std::string hint = {})
      : Error(ExitCode::kRunFailed, std::move(message), std::move(hint)) {}
};

// Something the machine lacks: CUDA, io_uring, O_DIRECT where required (exit 3).
struct EnvironmentError : Error {
  explicit EnvironmentError(std::string message, std::string hint = {})
      : Error(ExitCode::kEnvironment, std::move(message), std::move(hint)) {}
};

// SIGINT/SIGTERM observed by a long loop (exit 130, after partial results are flushed).
struct InterruptedError : Error {
  InterruptedError() : Error(ExitCode::kInterrupted, "interrupted") {}
};

// A broken invariant inside sparsetrain: a bug, never the user's fault (exit 70).
struct InternalError : Error {
  explicit InternalError(std::string message)
      : Error(ExitCode::kInternal, std::move(message),
              "this is a bug in sparsetrain; please report it with the command line") {}
};

// "cannot open 'PATH': No such file or directory" style text for an errno value.
std::string errno_text(int err);
// Throws RunError (or UsageError for ENOENT/EACCES/ENOTDIR on user paths) naming path and errno.
[[noreturn]] void throw_path_error(const std::string& what, const std::string& path, int err,
                                   std::string hint = {});

[[noreturn]] void fail_assert(const char* expr, const char* file, int line, const std::string& msg);

// Set by the SIGINT/SIGTERM handler that main installs; polled by long loops.
bool interrupt_requested();
void request_interrupt();
// Throws InterruptedError when an interrupt was requested.
void check_interrupt();

}  // namespace sparsetrain::common

#define ST_ASSERT(cond, msg)                                                         \
  do {                                                                               \
    if (!(cond)) ::sparsetrain::common::fail_assert(#cond, __FILE__, __LINE__, msg); \
  } while (0)
