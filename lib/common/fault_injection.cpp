// Injected I/O faults (see fault_injection.h).
#include "common/fault_injection.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>

#include "common/error.h"

namespace sparsetrain::common {

namespace {

std::mutex g_mutex;  // guards the fault; the counts are atomics
IoFault g_fault;
std::atomic<bool> g_armed{false};  // g_fault.active(), read without the lock on every operation
bool g_set_by_hand = false;
std::atomic<std::uint64_t> g_counts[kFaultOps];

const char* op_name(FaultOp op) {
  switch (op) {
    case FaultOp::kRead:
      return "read";
    case FaultOp::kWrite:
      return "write";
    case FaultOp::kSync:
      return "sync";
    case FaultOp::kFileWrite:
      return "file-write";
    case FaultOp::kFileSync:
      return "file-sync";
    case FaultOp::kRename:
      return "rename";
  }
  return "?";
}

const char* kind_name(FaultKind kind) {
  switch (kind) {
    case FaultKind::kEio:
      return "eio";
    case FaultKind::kEnospc:
      return "enospc";
    case FaultKind::kShort:
      return "short";
    case FaultKind::kNoSync:
      return "nosync";
    case FaultKind::kNone:
      break;
  }
  return "none";
}

}  // namespace

IoFault parse_io_fault(std::string_view text) {
  const std::string hint =
      "SPARSETRAIN_IO_FAULT is OP:N:KIND with OP read, write, sync, file-write, file-sync or "
      "rename, N >= 1 and KIND eio, enospc, short (writes) or nosync (syncs), e.g. write:12:eio";
  const auto bad = [&] {
    return UsageError("bad I/O fault '" + std::string(text) + "' (the form is OP:N:KIND)", hint);
  };
  const std::size_t a = text.find(':');
  const std::size_t b = a == std::string_view::npos ? a : text.find(':', a + 1);
  if (b == std::string_view::npos) throw bad();
  const std::string_view op = text.substr(0, a), n = text.substr(a + 1, b - a - 1),
                         kind = text.substr(b + 1);
  IoFault f;
  bool known = false;
  for (int i = 0; i < kFaultOps && !known; ++i) {
    if (op == op_name(static_cast<FaultOp>(i))) {
      f.op = static_cast<FaultOp>(i);
      known = true;
    }
  }
  if (!known) throw bad();
  const bool sync = f.op == FaultOp::kSync || f.op == FaultOp::kFileSync;
  const bool write = f.op == FaultOp::kWrite || f.op == FaultOp::kFileWrite;
  if (n.empty() || n.size() > 18 || n.find_first_not_of("0123456789") != std::string_view::npos)
    throw bad();
  f.index = std::stoull(std::string(n));
  if (f.index == 0) throw bad();
  if (kind == "eio") {
    f.kind = FaultKind::kEio;
  } else if (kind == "enospc") {
    f.kind = FaultKind::kEnospc;
  } else if (kind == "short" && (write || f.op == FaultOp::kRead)) {
    f.kind = FaultKind::kShort;
  } else if (kind == "nosync" && sync) {
    f.kind = FaultKind::kNoSync;
  } else {
    throw bad();
  }
  return f;
}

std::string io_fault_name(const IoFault& fault) {
  return std::string(op_name(fault.op)) + ":" + std::to_string(fault.index) + ":" +
         kind_name(fault.kind);
}

IoOpCounts io_op_counts() {
  return {g_counts[0].load(), g_counts[1].load(), g_counts[2].load(),
          g_counts[3].load(), g_counts[4].load(), g_counts[5].load()};
}

std::uint64_t IoOpCounts::of(FaultOp op) const {
  switch (op) {
    case FaultOp::kRead:
      return reads;
    case FaultOp::kWrite:
      return writes;
    case FaultOp::kSync:
      return syncs;
    case FaultOp::kFileWrite:
      return file_writes;
    case FaultOp::kFileSync:
      return file_syncs;
    case FaultOp::kRename:
      return renames;
  }
  return 0;
}

void set_io_fault(const IoFault& fault) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_fault = fault;
  g_armed.store(fault.active());
  g_set_by_hand = true;
  for (auto& c : g_counts) c.store(0);
}

void arm_io_fault_from_env() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* text = std::getenv("SPARSETRAIN_IO_FAULT");
    if (text == nullptr || *text == '\0') return;
    const IoFault fault = parse_io_fault(text);
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_set_by_hand) return;
    g_fault = fault;
    g_armed.store(fault.active());
  });
}

FaultKind count_io_op(FaultOp op) {
  const std::uint64_t n = g_counts[static_cast<int>(op)].fetch_add(1) + 1;
  if (!g_armed.load(std::memory_order_relaxed)) return FaultKind::kNone;  // the usual case
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_fault.active() || g_fault.op != op || g_fault.index != n) return FaultKind::kNone;
  const FaultKind kind = g_fault.kind;
  g_fault = IoFault{};  // once
  g_armed.store(false);
  return kind;
}

void throw_injected_fault(const char* what, const std::string& path, FaultKind kind) {
  const int err = kind == FaultKind::kEnospc ? ENOSPC : EIO;
  throw RunError(std::string(what) + " '" + path + "': " + errno_text(err) + " (injected fault)",
                 err == ENOSPC ? "free some space or choose another directory" : "");
}

}  // namespace sparsetrain::common
