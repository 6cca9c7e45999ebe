// The io_uring backend of IoEngine: one ring, one worker thread that owns its submission and
// completion queues (the queue-to-depth / submit / reap loop of liburing's io_uring-cp.c), fixed
// files, and fixed buffers for memory the caller registered. Other threads only hand jobs over
// through a mutex-protected queue, so the ring itself is never shared.
#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <thread>

#include "common/io/io_job.h"
#include "common/log.h"

namespace sparsetrain::common::io {

namespace {

constexpr unsigned kMaxFiles = 256;   // fixed-file table slots (FileIds beyond use plain fds)
constexpr unsigned kMaxBuffers = 64;  // fixed-buffer table slots
constexpr std::size_t kMaxBufferChunk = std::size_t{1} << 30;  // the kernel's limit per iovec

class UringEngine final : public IoEngine {
 public:
  explicit UringEngine(const IoOptions& options) : IoEngine(options, IoBackend::kUring) {
    const int rc = io_uring_queue_init(options.queue_depth, &ring_, /*flags=*/0);
    if (rc < 0) {
      throw EnvironmentError(cat("io_uring is unavailable: ", std::strerror(-rc)),
                             "needs Linux >= 5.6 without a seccomp filter on io_uring_setup; "
                             "SPARSETRAIN_IO_BACKEND=threads selects the fallback");
    }
    files_fixed_ = io_uring_register_files_sparse(&ring_, kMaxFiles) == 0;
    buffers_fixed_ = io_uring_register_buffers_sparse(&ring_, kMaxBuffers) == 0;
    for (auto& f : fixed_file_) f.store(false);
    worker_ = std::thread([this] { run_worker(); });
  }

  ~UringEngine() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
    io_uring_queue_exit(&ring_);
    std::lock_guard<std::mutex> lock(files_mutex_);
    for (FileEntry& f : files_)
      if (f.fd >= 0) ::close(f.fd);
  }

  FileId open_file(const std::string& path, OpenMode mode) override {
    const FileId id = add_file(path, mode);
    if (files_fixed_ && id < static_cast<FileId>(kMaxFiles)) {
      int fd = file_entry(id).fd;
      fixed_file_[id].store(io_uring_register_files_update(&ring_, id, &fd, 1) == 1);
    }
    return id;
  }

  void close_file(FileId file) override {
    if (file >= 0 && file < static_cast<FileId>(kMaxFiles) && fixed_file_[file].exchange(false)) {
      int fd = -1;
      io_uring_register_files_update(&ring_, file, &fd, 1);
    }
    remove_file(file);
  }

  bool register_buffer(void* buffer, std::size_t bytes) override {
    if (!buffers_fixed_ || bytes == 0) return false;
    std::lock_guard<std::mutex> lock(buffers_mutex_);
    std::vector<unsigned> taken;
    for (std::size_t pos = 0; pos < bytes; pos += kMaxBufferChunk) {
      unsigned slot = 0;
      while (slot < kMaxBuffers && buffers_[slot].base != nullptr) ++slot;
      iovec iov{static_cast<std::byte*>(buffer) + pos, std::min(kMaxBufferChunk, bytes - pos)};
      if (slot == kMaxBuffers ||
          io_uring_register_buffers_update_tag(&ring_, slot, &iov, nullptr, 1) != 1) {
        for (unsigned s : taken) release_slot(s);
        return false;
      }
      buffers_[slot] = {static_cast<std::byte*>(iov.iov_base), iov.iov_len, buffer};
      taken.push_back(slot);
    }
    return true;
  }

  void unregister_buffer(void* buffer) override {
    std::lock_guard<std::mutex> lock(buffers_mutex_);
    for (unsigned slot = 0; slot < kMaxBuffers; ++slot)
      if (buffers_[slot].owner == buffer) release_slot(slot);
  }

 protected:
  void enqueue(std::shared_ptr<IoJob> job) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      incoming_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  struct FixedBuffer {
    std::byte* base = nullptr;
    std::size_t bytes = 0;
    void* owner = nullptr;  // the pointer register_buffer was given
  };

  // Caller holds buffers_mutex_.
  void release_slot(unsigned slot) {
    iovec empty{nullptr, 0};
    io_uring_register_buffers_update_tag(&ring_, slot, &empty, nullptr, 1);
    buffers_[slot] = FixedBuffer{};
  }

  // Fixed-buffer slot holding [p, p + n), or -1.
  int find_fixed_buffer(const std::byte* p, std::size_t n) {
    std::lock_guard<std::mutex> lock(buffers_mutex_);
    for (unsigned slot = 0; slot < kMaxBuffers; ++slot) {
      const FixedBuffer& b = buffers_[slot];
      if (b.base != nullptr && p >= b.base && p + n <= b.base + b.bytes)
        return static_cast<int>(slot);
    }
    return -1;
  }

  void prepare(io_uring_sqe* sqe, IoBlock* block) {
    const IoRequest& req = block->req();
    const bool fixed_file =
        req.file < static_cast<FileId>(kMaxFiles) && fixed_file_[req.file].load();
    const int fd = fixed_file ? req.file : block->fd;
    const auto len = static_cast<unsigned>(block->remaining());
    const int slot = buffers_fixed_ ? find_fixed_buffer(block->buffer(), len) : -1;
    if (slot >= 0) counters_.fixed_buffer_blocks.fetch_add(1, std::memory_order_relaxed);
    if (req.op == IoOp::kRead) {
      if (slot >= 0)
        io_uring_prep_read_fixed(sqe, fd, block->buffer(), len, block->offset(), slot);
      else
        io_uring_prep_read(sqe, fd, block->buffer(), len, block->offset());
    } else {
      if (slot >= 0)
        io_uring_prep_write_fixed(sqe, fd, block->buffer(), len, block->offset(), slot);
      else
        io_uring_prep_write(sqe, fd, block->buffer(), len, block->offset());
    }
    if (fixed_file) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, block);
  }

  // Frees a settled block's slot; returns its job when the job just finished.
  std::shared_ptr<IoJob> retire(IoBlock* block) {
    std::shared_ptr<IoJob> job = std::move(block->job);
    free_.push_back(block);
    return job->claim_resolution() ? job : nullptr;
  }

  void run_worker() {
    std::vector<IoBlock> slots(options_.queue_depth);
    for (IoBlock& b : slots) free_.push_back(&b);
    std::deque<std::shared_ptr<IoJob>> active;  // round-robin: one block per job per turn
    std::deque<IoBlock*> retry;                 // short transfers and -EAGAIN, resubmitted first
    std::vector<std::shared_ptr<IoJob>> finished;
    unsigned inflight = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (inflight == 0 && retry.empty() && active.empty()) {
          cv_.wait(lock, [&] { return stop_ || !incoming_.empty(); });
          if (incoming_.empty()) return;  // stop_ and nothing left
        }
        while (!incoming_.empty()) {
          active.push_back(std::move(incoming_.front()));
          incoming_.pop_front();
        }
      }
      // Queue to depth.
      while (inflight < options_.queue_depth) {
        IoBlock* block = nullptr;
        if (!retry.empty()) {
          block = retry.front();
          retry.pop_front();
          if (block->job->failed) {  // its job is lost: do not resubmit
            --block->job->outstanding;
            if (auto job = retire(block)) finished.push_back(std::move(job));
            continue;
          }
        } else {
          while (!active.empty() && !active.front()->has_more()) active.pop_front();
          if (active.empty() || free_.empty()) break;
          std::shared_ptr<IoJob> job = std::move(active.front());
          active.pop_front();
          block = free_.back();
          free_.pop_back();
          *block = carve_block(job, options_.block_bytes);
          if (job->has_more()) active.push_back(std::move(job));
        }
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (sqe == nullptr) {
          retry.push_front(block);
          break;
        }
        prepare(sqe, block);
        ++inflight;
      }
      const int rc = io_uring_submit_and_wait(&ring_, inflight > 0 ? 1 : 0);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        log_error("io_uring_submit_and_wait: ", std::strerror(-rc));
      }
      // Reap everything that completed.
      io_uring_cqe* cqe = nullptr;
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        --inflight;
        auto* block = static_cast<IoBlock*>(io_uring_cqe_get_data(cqe));
        if (settle_block(*block, cqe->res, counters_) == BlockOutcome::kRequeue) {
          retry.push_back(block);
        } else if (auto job = retire(block)) {
          finished.push_back(std::move(job));
        }
      }
      io_uring_cq_advance(&ring_, seen);
      for (auto& job : finished) job->resolve();
      finished.clear();
    }
  }

  io_uring ring_{};
  bool files_fixed_ = false;
  bool buffers_fixed_ = false;
  std::array<std::atomic<bool>, kMaxFiles> fixed_file_;
  std::mutex buffers_mutex_;
  std::array<FixedBuffer, kMaxBuffers> buffers_{};
  std::vector<IoBlock*> free_;  // worker thread only

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<IoJob>> incoming_;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace

std::unique_ptr<IoEngine> make_uring_engine(const IoOptions& options) {
  return std::make_unique<UringEngine>(options);
}

}  // namespace sparsetrain::common::io
