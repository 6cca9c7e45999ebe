#include "common/io/io_engine.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/io/aligned_buffer.h"
#include "common/io/io_job.h"
#include "common/io/probe.h"
#include "common/log.h"

namespace sparsetrain::common::io {

namespace {

// One warning per process and reason: a store opening many engines warns once.
void warn_once(std::atomic<bool>& flag, const std::string& message) {
  if (!flag.exchange(true)) log_warn(message);
}
std::atomic<bool> g_warned_uring{false};
std::atomic<bool> g_warned_direct{false};
std::atomic<bool> g_warned_buffered{false};

std::string io_hint(int err) {
  switch (err) {
    case ENOSPC:
      return "free space on that disk, or pass --ssd a directory on a larger one";
    case EIO:
      return "the disk reported an I/O error: check `dmesg` and the device's health";
    case EINVAL:
      return "O_DIRECT needs 4096-aligned offsets, lengths and buffers";
    default:
      return {};
  }
}

}  // namespace

IoBackend parse_io_backend(std::string_view name) {
  if (name == "auto") return IoBackend::kAuto;
  if (name == "uring" || name == "io_uring") return IoBackend::kUring;
  if (name == "threads" || name == "pread") return IoBackend::kThreads;
  throw UsageError(cat("unknown I/O backend '", name, "'"), "use auto, uring or threads");
}

const char* io_backend_name(IoBackend backend) {
  switch (backend) {
    case IoBackend::kUring:
      return "uring";
    case IoBackend::kThreads:
      return "threads";
    case IoBackend::kAuto:
      break;
  }
  return "auto";
}

IoBackend io_backend_from_env() {
  const char* value = std::getenv("SPARSETRAIN_IO_BACKEND");
  return value == nullptr || *value == '\0' ? IoBackend::kAuto : parse_io_backend(value);
}

BlockOutcome settle_block(IoBlock& block, long res, IoCounters& counters) {
  IoJob& job = *block.job;
  const IoRequest& req = block.req();
  if (res == -EAGAIN || res == -EINTR) {
    counters.requeued.fetch_add(1, std::memory_order_relaxed);
    return BlockOutcome::kRequeue;
  }
  if (res > 0) {
    block.done += static_cast<std::size_t>(res);
    if (req.op == IoOp::kRead)
      counters.bytes_read.fetch_add(res, std::memory_order_relaxed);
    else
      counters.bytes_written.fetch_add(res, std::memory_order_relaxed);
    if (block.done < block.bytes) {
      counters.requeued.fetch_add(1, std::memory_order_relaxed);
      return BlockOutcome::kRequeue;
    }
    counters.blocks.fetch_add(1, std::memory_order_relaxed);
  }
  --job.outstanding;
  if (res <= 0 && !job.failed) {
    const IoJob::File& file = job.file(req.file);
    const char* verb = req.op == IoOp::kRead ? "cannot read" : "cannot write";
    const int err = res == 0 ? (req.op == IoOp::kRead ? ENODATA : ENOSPC) : static_cast<int>(-res);
    std::string message =
        res == 0 && req.op == IoOp::kRead
            ? cat("unexpected end of file reading '", file.path, "' at byte ", block.offset(), " (",
                  block.remaining(), " bytes missing)")
            : cat(verb, " '", file.path, "' at byte ", block.offset(), ": ", std::strerror(err));
    std::string hint =
        res == 0 && req.op == IoOp::kRead
            ? "the file is shorter than its manifest says: it was truncated or replaced"
            : io_hint(err);
    job.failed = true;
    job.error =
        std::make_exception_ptr(IoError(std::move(message), std::move(hint), err, file.path));
  }
  return BlockOutcome::kDone;
}

std::unique_ptr<IoEngine> IoEngine::create(IoOptions options,
                                           const std::vector<std::string>& dirs) {
  if (options.block_bytes == 0 || options.block_bytes % kIoAlignment != 0) {
    throw UsageError(cat("I/O block size ", options.block_bytes, " is not a multiple of 4096"),
                     "pass --block as a multiple of 4KiB, e.g. 1MiB");
  }
  if (options.queue_depth == 0 || options.queue_depth > 4096) {
    throw UsageError(cat("I/O queue depth ", options.queue_depth, " is out of range"),
                     "pass --qd between 1 and 4096");
  }
  options.threads = std::max(1u, options.threads);
  arm_io_fault_from_env();
  IoBackend backend = options.backend;
  if (backend == IoBackend::kAuto) backend = io_backend_from_env();
  if (backend == IoBackend::kAuto) {
    backend = IoBackend::kUring;
    for (const std::string& dir : dirs) {
      struct stat st {};
      if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;  // open_file reports it
      const ProbeResult direct = probe_o_direct(dir);
      if (!direct.ok && direct.err == EINVAL) {
        warn_once(g_warned_direct,
                  cat("the filesystem of '", dir, "' rejects O_DIRECT (", direct.detail,
                      "); using the pread/pwrite fallback with buffered I/O"));
        backend = IoBackend::kThreads;
        break;
      }
    }
  }
  if (backend == IoBackend::kUring) {
    try {
      return make_uring_engine(options);
    } catch (const EnvironmentError& e) {
      if (options.backend == IoBackend::kUring) throw;
      warn_once(g_warned_uring, cat(e.what(), "; using the pread/pwrite fallback"));
    }
  }
  return make_threads_engine(options);
}

FileId IoEngine::add_file(const std::string& path, OpenMode mode) {
  int flags = O_CLOEXEC;
  switch (mode) {
    case OpenMode::kRead:
      flags |= O_RDONLY;
      break;
    case OpenMode::kReadWrite:
      flags |= O_RDWR;
      break;
    case OpenMode::kCreate:
      flags |= O_RDWR | O_CREAT;
      break;
  }
  bool direct = true;
  int fd = ::open(path.c_str(), flags | O_DIRECT, 0644);
  if (fd < 0 && errno == EINVAL) {
    if (options_.require_direct) {
      throw EnvironmentError(
          cat("cannot open '", path, "' with O_DIRECT: the filesystem does not support it"),
          "put the store on a disk filesystem (ext4, xfs), not tmpfs or overlay");
    }
    direct = false;
    fd = ::open(path.c_str(), flags, 0644);
    if (fd >= 0 && !g_warned_direct.load()) {  // create() already said so otherwise
      warn_once(g_warned_buffered,
                cat("the filesystem of '", path,
                    "' rejects O_DIRECT; using buffered I/O (slower, uses page cache)"));
    }
  }
  if (fd < 0) {
    const int err = errno;
    throw_path_error(
        "cannot open", path, err,
        err == ENOENT ? "check that the directory exists (pass --ssd existing directories)"
        : err == EACCES || err == EPERM || err == EROFS ? "pass --ssd a writable directory"
                                                        : "");
  }
  std::lock_guard<std::mutex> lock(files_mutex_);
  for (std::size_t i = 0; i < files_.size(); ++i) {
    if (files_[i].fd < 0) {
      files_[i] = FileEntry{path, fd, direct};
      return static_cast<FileId>(i);
    }
  }
  files_.push_back(FileEntry{path, fd, direct});
  return static_cast<FileId>(files_.size() - 1);
}

IoEngine::FileEntry IoEngine::file_entry(FileId file) const {
  std::lock_guard<std::mutex> lock(files_mutex_);
  if (file < 0 || static_cast<std::size_t>(file) >= files_.size() || files_[file].fd < 0) {
    throw InternalError(cat("I/O engine: file id ", file, " is not open"));
  }
  return files_[file];
}

void IoEngine::remove_file(FileId file) {
  FileEntry entry = file_entry(file);
  ::close(entry.fd);
  std::lock_guard<std::mutex> lock(files_mutex_);
  files_[file] = FileEntry{};
}

bool IoEngine::is_direct(FileId file) const { return file_entry(file).direct; }

std::string IoEngine::path(FileId file) const { return file_entry(file).path; }

std::uint64_t IoEngine::file_size(FileId file) const {
  const FileEntry entry = file_entry(file);
  struct stat st {};
  if (::fstat(entry.fd, &st) != 0) throw_path_error("cannot stat", entry.path, errno);
  return static_cast<std::uint64_t>(st.st_size);
}

void IoEngine::sync(FileId file) {
  const FileEntry entry = file_entry(file);
  const FaultKind fault = options_.faults ? count_io_op(FaultOp::kSync) : FaultKind::kNone;
  if (fault == FaultKind::kNoSync) return;  // injected: a disk that acknowledges and keeps nothing
  if (fault != FaultKind::kNone) {
    const int err = fault == FaultKind::kEnospc ? ENOSPC : EIO;
    throw IoError(cat("cannot sync '", entry.path, "': ", std::strerror(err), " (injected fault)"),
                  io_hint(err), err, entry.path);
  }
  if (::fdatasync(entry.fd) != 0) {
    const int err = errno;
    throw IoError(cat("cannot sync '", entry.path, "': ", std::strerror(err)), io_hint(err), err,
                  entry.path);
  }
}

void IoEngine::allocate(FileId file, std::uint64_t offset, std::uint64_t bytes) {
  if (bytes == 0) return;
  const FileEntry entry = file_entry(file);
  const int rc = ::posix_fallocate(entry.fd, static_cast<off_t>(offset), static_cast<off_t>(bytes));
  if (rc == 0) return;
  if (rc == EOPNOTSUPP || rc == EINVAL) {
    // No preallocation on this filesystem: extend the file instead; ENOSPC may then come later.
    struct stat st {};
    if (::fstat(entry.fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < offset + bytes &&
        ::ftruncate(entry.fd, static_cast<off_t>(offset + bytes)) != 0) {
      const int err = errno;
      throw IoError(cat("cannot extend '", entry.path, "': ", std::strerror(err)), io_hint(err),
                    err, entry.path);
    }
    return;
  }
  throw IoError(cat("cannot reserve ", bytes, " bytes in '", entry.path, "': ", std::strerror(rc)),
                io_hint(rc), rc, entry.path);
}

std::future<void> IoEngine::submit(std::vector<IoRequest> requests) {
  auto job = std::make_shared<IoJob>();
  std::future<void> future = job->done.get_future();
  for (const IoRequest& req : requests) {
    bool known = false;
    for (const IoJob::File& f : job->files) known = known || f.id == req.file;
    if (!known) {
      const FileEntry entry = file_entry(req.file);
      job->files.push_back({req.file, entry.fd, entry.direct, entry.path});
    }
    const IoJob::File& file = job->file(req.file);
    if (req.bytes > 0 && req.buffer == nullptr) {
      throw UsageError(cat("I/O request on '", file.path, "' has no buffer"));
    }
    if (file.direct && (req.offset % kIoAlignment != 0 || req.bytes % kIoAlignment != 0 ||
                        reinterpret_cast<std::uintptr_t>(req.buffer) % kIoAlignment != 0)) {
      throw UsageError(cat("unaligned O_DIRECT request on '", file.path, "': offset ", req.offset,
                           ", ", req.bytes, " bytes, buffer ", req.buffer),
                       "O_DIRECT needs offsets, lengths and buffers that are multiples of 4096");
    }
  }
  requests.erase(std::remove_if(requests.begin(), requests.end(),
                                [](const IoRequest& r) { return r.bytes == 0; }),
                 requests.end());
  // Injected faults (fault_injection.h): each request counts as one read or write.
  for (const IoRequest& req : requests) {
    if (!options_.faults) break;
    const FaultKind fault = count_io_op(req.op == IoOp::kRead ? FaultOp::kRead : FaultOp::kWrite);
    if (fault == FaultKind::kNone) continue;
    job->done.set_exception(std::make_exception_ptr(injected_failure(req, fault)));
    return future;
  }
  job->requests = std::move(requests);
  if (job->requests.empty()) {
    job->done.set_value();
    return future;
  }
  enqueue(std::move(job));
  return future;
}

IoError IoEngine::injected_failure(const IoRequest& req, FaultKind fault) {
  const FileEntry entry = file_entry(req.file);
  const bool read = req.op == IoOp::kRead;
  const char* verb = read ? "cannot read" : "cannot write";
  if (fault != FaultKind::kShort) {
    const int err = fault == FaultKind::kEnospc ? ENOSPC : EIO;
    return IoError(cat(verb, " '", entry.path, "' at byte ", req.offset, ": ", std::strerror(err),
                       " (injected fault)"),
                   io_hint(err), err, entry.path);
  }
  // Half of it, in whole pages (O_DIRECT), moves before the device fails: a torn transfer.
  const std::size_t half = req.bytes / 2 / kIoAlignment * kIoAlignment;
  ssize_t moved = 0;
  if (half > 0) {
    moved = read ? ::pread(entry.fd, req.buffer, half, static_cast<off_t>(req.offset))
                 : ::pwrite(entry.fd, req.buffer, half, static_cast<off_t>(req.offset));
  }
  return IoError(cat(read ? "short read of '" : "short write to '", entry.path, "' at byte ",
                     req.offset, ": ", std::max<ssize_t>(moved, 0), " of ", req.bytes,
                     " bytes, then ", std::strerror(EIO), " (injected fault)"),
                 io_hint(EIO), EIO, entry.path);
}

IoStats IoEngine::stats() const {
  IoStats s;
  s.bytes_read = counters_.bytes_read.load();
  s.bytes_written = counters_.bytes_written.load();
  s.blocks = counters_.blocks.load();
  s.requeued = counters_.requeued.load();
  s.fixed_buffer_blocks = counters_.fixed_buffer_blocks.load();
  return s;
}

}  // namespace sparsetrain::common::io
