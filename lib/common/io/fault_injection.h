// Injected I/O faults, to prove that a failing disk loses nothing: the engine (io_engine.h) counts
// every read and write request it is given and every sync, process-wide, and can fail one of
// them on purpose. Always compiled in (CI runs it); off unless asked:
//   SPARSETRAIN_IO_FAULT=OP:N:KIND   read at engine creation, e.g. write:12:eio
//   OP    read | write | sync         which operation is counted
//   N     1, 2, …                     the N-th such operation of the process fails (once)
//   KIND  eio | enospc                the request fails as a whole with that errno
//         short                       half of it (whole 4 KiB pages) reaches the file, then EIO
//         nosync                      (sync only) reports success without syncing: a lying disk
// An injected failure is an IoError like a real one: its message names the operation, the file
// and the errno (and says it was injected).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sparsetrain::common::io {

enum class FaultOp { kRead, kWrite, kSync };
enum class FaultKind { kNone, kEio, kEnospc, kShort, kNoSync };

struct IoFault {
  FaultOp op = FaultOp::kWrite;
  std::uint64_t index = 0;  // 1-based: the index-th `op` of the process; 0 = none
  FaultKind kind = FaultKind::kNone;
  bool active() const { return kind != FaultKind::kNone && index > 0; }
};

// "write:12:eio" -> IoFault; UsageError naming the text otherwise (nosync only for sync).
IoFault parse_io_fault(std::string_view text);
std::string io_fault_name(const IoFault& fault);  // back to "write:12:eio"

// Operations counted so far in this process (each request of a batch, each sync).
struct IoOpCounts {
  std::uint64_t reads = 0, writes = 0, syncs = 0;
};
IoOpCounts io_op_counts();

// Arms `fault` for this process and restarts the counts (tests); IoFault{} disarms. The
// environment variable arms it when the first engine is created, unless a fault was set here.
void set_io_fault(const IoFault& fault);

// For the engine: counts one `op` and returns the armed fault's kind when this is the one to fail
// (then disarms it), else kNone.
FaultKind count_io_op(FaultOp op);
// For the engine: arms the fault of SPARSETRAIN_IO_FAULT, once per process.
void arm_io_fault_from_env();

}  // namespace sparsetrain::common::io
