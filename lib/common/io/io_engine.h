// The asynchronous file I/O engine under the SSD tensor store and `fuyou bench-io`.
//
// Callers submit batches of read/write requests (file, byte offset, buffer, length) and get a
// std::future that completes when every byte has moved, or rethrows the first failure as an IoError
// carrying errno and path. The engine splits requests into blocks of at most `block_bytes`, keeps
// up to `queue_depth` blocks in flight, serves concurrent batches round-robin, requeues short
// reads/writes and -EAGAIN/-EINTR, and is safe to call from many threads.
//
// Two backends:
//  - kUring: one ring driven by one worker thread (liburing); files are registered (fixed files)
//    and buffers registered with register_buffer() are used as fixed buffers (READ/WRITE_FIXED).
//  - kThreads: pread/pwrite on a small thread pool. Chosen automatically, with one warning per
//    process, where io_uring is refused (seccomp, old kernel) or a directory's filesystem rejects
//    O_DIRECT (tmpfs); selectable with IoOptions::backend or SPARSETRAIN_IO_BACKEND=threads.
// Files are opened with O_DIRECT when their filesystem accepts it. For O_DIRECT files every
// request's offset, length and buffer address must be multiples of kIoAlignment (4096); buffered
// files take any. Not a cache, not a scheduler across processes, and no torch here.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "common/fault_injection.h"

namespace sparsetrain::common::io {

enum class IoBackend { kAuto, kUring, kThreads };
// "auto|uring|threads" -> IoBackend; throws UsageError otherwise.
IoBackend parse_io_backend(std::string_view name);
const char* io_backend_name(IoBackend backend);
// SPARSETRAIN_IO_BACKEND from the environment, kAuto when unset.
IoBackend io_backend_from_env();

struct IoOptions {
  IoBackend backend = IoBackend::kAuto;            // kAuto also consults SPARSETRAIN_IO_BACKEND
  std::size_t block_bytes = std::size_t{1} << 20;  // largest single I/O; multiple of 4096
  unsigned queue_depth = 32;                       // blocks in flight (ring entries)
  unsigned threads = 4;                            // kThreads: worker threads
  bool require_direct = false;  // refuse (EnvironmentError) files whose filesystem lacks O_DIRECT
  // Injected faults (fault_injection.h) apply to this engine's requests and syncs: off for a
  // measurement whose scratch I/O is not the data's (the SSD rate probe), so that the counts
  // are the run's own.
  bool faults = true;
};

// An I/O failure: RunError with the errno and the file's path (exit 1; ENOENT/EACCES at open time
// are UsageErrors thrown by throw_path_error instead).
class IoError : public RunError {
 public:
  IoError(std::string message, std::string hint, int err, std::string path)
      : RunError(std::move(message), std::move(hint)), err_(err), path_(std::move(path)) {}
  int err() const { return err_; }
  const std::string& path() const { return path_; }

 private:
  int err_;
  std::string path_;
};

using FileId = int;
enum class OpenMode { kRead, kReadWrite, kCreate /* read-write, created if missing */ };
enum class IoOp { kRead, kWrite };

struct IoRequest {
  IoOp op = IoOp::kRead;
  FileId file = -1;
  std::uint64_t offset = 0;  // bytes into the file
  void* buffer = nullptr;    // `bytes` long; source for writes, destination for reads
  std::size_t bytes = 0;
};

struct IoJob;  // a submitted batch (io_job.h, internal)

struct IoStats {
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t blocks = 0;               // block I/Os completed
  std::uint64_t requeued = 0;             // short transfers and -EAGAIN/-EINTR resubmitted
  std::uint64_t fixed_buffer_blocks = 0;  // kUring: blocks that used a registered buffer
};

// Lock-free counters behind IoStats, bumped by the backends.
struct IoCounters {
  std::atomic<std::uint64_t> bytes_read{0};
  std::atomic<std::uint64_t> bytes_written{0};
  std::atomic<std::uint64_t> blocks{0};
  std::atomic<std::uint64_t> requeued{0};
  std::atomic<std::uint64_t> fixed_buffer_blocks{0};
};

class IoEngine {
 public:
  // Picks the backend (see above). `dirs` are the directories the caller will use: with kAuto,
  // any whose filesystem rejects O_DIRECT selects kThreads. Throws EnvironmentError when kUring is
  // asked for explicitly and io_uring is refused.
  static std::unique_ptr<IoEngine> create(IoOptions options,
                                          const std::vector<std::string>& dirs = {});
  virtual ~IoEngine() = default;

  IoBackend backend() const { return backend_; }
  const IoOptions& options() const { return options_; }

  // Opens `path`, with O_DIRECT if its filesystem allows. Throws UsageError (missing directory,
  // permission) or IoError naming the path; EnvironmentError when require_direct and no O_DIRECT.
  virtual FileId open_file(const std::string& path, OpenMode mode) = 0;
  // Waits for nothing: the caller must have no request in flight on `file`.
  virtual void close_file(FileId file) = 0;
  bool is_direct(FileId file) const;
  std::string path(FileId file) const;
  std::uint64_t file_size(FileId file) const;
  // fdatasync: every completed write to `file` is durable when this returns. Throws IoError.
  void sync(FileId file);
  // Reserves [offset, offset + bytes) on disk (fallocate), so a full disk fails here and not in the
  // middle of an update. Throws IoError (ENOSPC with a hint).
  void allocate(FileId file, std::uint64_t offset, std::uint64_t bytes);

  // Registers [buffer, buffer + bytes) for fixed-buffer I/O (kUring; a no-op otherwise). Best
  // effort: returns false when the kernel refuses (e.g. RLIMIT_MEMLOCK), and requests from that
  // memory then use ordinary reads/writes. The buffer must outlive its registration.
  virtual bool register_buffer(void* buffer, std::size_t bytes) = 0;
  virtual void unregister_buffer(void* buffer) = 0;

  // Queues `requests` (all of them or none: validation errors throw UsageError here). The future
  // completes when all bytes moved; it rethrows the first IoError. Buffers must stay valid until
  // then. An empty batch completes at once.
  std::future<void> submit(std::vector<IoRequest> requests);
  // submit(...).get()
  void run(std::vector<IoRequest> requests) { submit(std::move(requests)).get(); }

  IoStats stats() const;

 protected:
  IoEngine(IoOptions options, IoBackend backend) : options_(options), backend_(backend) {}
  struct FileEntry {
    std::string path;
    int fd = -1;
    bool direct = false;
  };
  // The IoError an injected fault (fault_injection.h) makes of `req`; a short one moves half of
  // it first, synchronously.
  IoError injected_failure(const IoRequest& req, FaultKind fault);
  // Hands a validated job to the backend.
  virtual void enqueue(std::shared_ptr<IoJob> job) = 0;
  // Opens and records a file; returns its id (index into files_, reused after close).
  FileId add_file(const std::string& path, OpenMode mode);
  FileEntry file_entry(FileId file) const;  // copy, under the lock
  // Closes the fd and frees the id.
  void remove_file(FileId file);

  IoOptions options_;
  IoBackend backend_;
  mutable std::mutex files_mutex_;
  std::vector<FileEntry> files_;  // index = FileId; fd -1 = free
  IoCounters counters_;
};

}  // namespace sparsetrain::common::io
