// Internal to the I/O engine (not installed for callers): a submitted batch of requests (`IoJob`),
// the blocks it is carved into, and the bookkeeping both backends share — carving, short-transfer
// and -EAGAIN requeueing, error capture and completion. Every IoJob field is touched only under the
// owning backend's lock (kThreads) or from its single worker thread (kUring).
#pragma once

#include <exception>
#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/io/io_engine.h"

namespace sparsetrain::common::io {

struct IoJob {
  struct File {
    FileId id;
    int fd;
    bool direct;
    std::string path;
  };
  std::vector<IoRequest> requests;
  std::vector<File> files;  // the distinct files the requests touch
  std::size_t next_request = 0;
  std::uint64_t next_pos = 0;   // bytes into requests[next_request] not yet carved
  std::size_t outstanding = 0;  // blocks carved and not yet settled
  bool failed = false;
  bool resolved = false;
  std::exception_ptr error;  // the first failure
  std::promise<void> done;

  bool has_more() const { return !failed && next_request < requests.size(); }
  bool finished() const { return outstanding == 0 && !has_more(); }
  const File& file(FileId id) const {
    for (const File& f : files)
      if (f.id == id) return f;
    return files.front();  // unreachable: submit() records every file
  }
  // Marks the job resolved; true the first time it is finished (the caller then calls resolve()).
  bool claim_resolution() {
    if (resolved || !finished()) return false;
    resolved = true;
    return true;
  }
  // Fulfils the promise; once, after claim_resolution() returned true, outside any lock.
  void resolve() {
    if (error)
      done.set_exception(error);
    else
      done.set_value();
  }
};

// One I/O of at most block_bytes, within one request.
struct IoBlock {
  std::shared_ptr<IoJob> job;
  std::size_t request = 0;
  std::uint64_t pos = 0;  // bytes into the request where this block starts
  std::size_t bytes = 0;  // block length
  std::size_t done = 0;   // bytes already moved (short transfers)
  int fd = -1;
  const IoRequest& req() const { return job->requests[request]; }
  std::byte* buffer() const { return static_cast<std::byte*>(req().buffer) + pos + done; }
  std::uint64_t offset() const { return req().offset + pos + done; }
  std::size_t remaining() const { return bytes - done; }
};

// Carves the next block of `job` (which has_more()) and counts it outstanding.
inline IoBlock carve_block(const std::shared_ptr<IoJob>& job, std::size_t block_bytes) {
  IoBlock block;
  block.job = job;
  block.request = job->next_request;
  block.pos = job->next_pos;
  const IoRequest& req = job->requests[job->next_request];
  block.bytes =
      static_cast<std::size_t>(std::min<std::uint64_t>(block_bytes, req.bytes - job->next_pos));
  block.fd = job->file(req.file).fd;
  job->next_pos += block.bytes;
  if (job->next_pos >= req.bytes) {
    ++job->next_request;
    job->next_pos = 0;
  }
  ++job->outstanding;
  return block;
}

enum class BlockOutcome { kDone, kRequeue };

// Settles one attempt of `block` that returned `res` (bytes moved, or -errno). Returns kRequeue
// for short transfers and -EAGAIN/-EINTR (the block is advanced); kDone otherwise, after
// decrementing outstanding and recording any error in the job.
BlockOutcome settle_block(IoBlock& block, long res, IoCounters& counters);

}  // namespace sparsetrain::common::io

namespace sparsetrain::common::io {
// Backend constructors (uring_engine.cpp, threads_engine.cpp). make_uring_engine throws
// EnvironmentError naming the kernel's reason when io_uring is refused.
std::unique_ptr<IoEngine> make_uring_engine(const IoOptions& options);
std::unique_ptr<IoEngine> make_threads_engine(const IoOptions& options);
}  // namespace sparsetrain::common::io
