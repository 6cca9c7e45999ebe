// Injected I/O faults, to prove that a failing disk loses nothing. Two layers count their
// operations, process-wide, and can fail one of them on purpose: the tensor store's engine
// (io_engine.h: every read and write request, every sync) and the writers of ordinary output
// files (atomic_file.h's AtomicFile and AtomicDirectory, teddy's GzipWriter: run records,
// manifests, checkpoints, token files, saved graphs). Always compiled in (CI runs it); off unless
// asked:
//   SPARSETRAIN_IO_FAULT=OP:N:KIND   read at start-up (main) and at engine creation
//   OP    read | write | sync         the engine's requests and syncs
//         file-write | file-sync      an output file's write calls and fsyncs (file or directory)
//         rename                      the rename that puts an output file or tree in place
//   N     1, 2, …                     the N-th such operation of the process fails (once)
//   KIND  eio | enospc                the operation fails as a whole with that errno
//         short                       (writes) half of it reaches the file, then EIO: a torn write
//         nosync                      (syncs) reports success without syncing: a lying disk
// An injected failure is an error like a real one: its message names the operation, the file and
// the errno (and says it was injected).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sparsetrain::common {

enum class FaultOp { kRead, kWrite, kSync, kFileWrite, kFileSync, kRename };
inline constexpr int kFaultOps = 6;
enum class FaultKind { kNone, kEio, kEnospc, kShort, kNoSync };

struct IoFault {
  FaultOp op = FaultOp::kWrite;
  std::uint64_t index = 0;  // 1-based: the index-th `op` of the process; 0 = none
  FaultKind kind = FaultKind::kNone;
  bool active() const { return kind != FaultKind::kNone && index > 0; }
};

// "write:12:eio" -> IoFault; UsageError naming the text otherwise (short only for writes, nosync
// only for syncs).
IoFault parse_io_fault(std::string_view text);
std::string io_fault_name(const IoFault& fault);  // back to "write:12:eio"

// Operations counted so far in this process (each request of a batch, each sync).
struct IoOpCounts {
  std::uint64_t reads = 0, writes = 0, syncs = 0;              // the engine's
  std::uint64_t file_writes = 0, file_syncs = 0, renames = 0;  // the output files'
  std::uint64_t of(FaultOp op) const;
};
IoOpCounts io_op_counts();

// Arms `fault` for this process and restarts the counts (tests); IoFault{} disarms. The
// environment variable arms it when the first engine is created, unless a fault was set here.
void set_io_fault(const IoFault& fault);

// For the engine and the file writers: counts one `op` and returns the armed fault's kind when
// this is the one to fail (then disarms it), else kNone.
FaultKind count_io_op(FaultOp op);
// Arms the fault of SPARSETRAIN_IO_FAULT, once per process (UsageError for a malformed one).
void arm_io_fault_from_env();

// For the file writers: throws the RunError of an injected eio/enospc/short `kind` on `path`,
// "cannot write 'PATH': No space left on device (injected fault)" (`what` = "cannot write" …).
[[noreturn]] void throw_injected_fault(const char* what, const std::string& path, FaultKind kind);

}  // namespace sparsetrain::common
