#include "common/error.h"

#include <atomic>
#include <cerrno>
#include <cstring>

namespace sparsetrain::common {

namespace {
std::atomic<bool> g_interrupt{false};
}  // namespace

std::string errno_text(int err) { return std::strerror(err); }

void throw_path_error(const std::string& what, const std::string& path, int err, std::string hint) {
  std::string message = what + " '" + path + "': " + errno_text(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case EACCES:
    case EPERM:
    case EROFS:
    case EISDIR:
      throw UsageError(std::move(message), std::move(hint));
    default:
      throw RunError(std::move(message), std::move(hint));
  }
}

void fail_assert(const char* expr, const char* file, int line, const std::string& msg) {
  throw InternalError(std::string("internal check failed: ") + expr + " (" + msg + ") at " + file +
                      ":" + std::to_string(line));
}

bool interrupt_requested() { return g_interrupt.load(std::memory_order_relaxed); }
void request_interrupt() { g_interrupt.store(true, std::memory_order_relaxed); }
void check_interrupt() {
  if (interrupt_requested()) throw InterruptedError();
}

}  // namespace sparsetrain::common
