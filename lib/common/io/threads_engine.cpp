// The fallback backend of IoEngine: pread/pwrite on a small pool of threads, each moving one block
// at a time. Used where io_uring is refused or O_DIRECT is not available (tmpfs), and for testing
// (SPARSETRAIN_IO_BACKEND=threads). Same contract as the io_uring backend.
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <deque>
#include <thread>

#include "common/io/io_job.h"

namespace sparsetrain::common::io {

namespace {

class ThreadsEngine final : public IoEngine {
 public:
  explicit ThreadsEngine(const IoOptions& options) : IoEngine(options, IoBackend::kThreads) {
    for (unsigned i = 0; i < options.threads; ++i) workers_.emplace_back([this] { run_worker(); });
  }

  ~ThreadsEngine() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : workers_) t.join();
    std::lock_guard<std::mutex> lock(files_mutex_);
    for (FileEntry& f : files_)
      if (f.fd >= 0) ::close(f.fd);
  }

  FileId open_file(const std::string& path, OpenMode mode) override { return add_file(path, mode); }
  void close_file(FileId file) override { remove_file(file); }
  bool register_buffer(void*, std::size_t) override { return false; }
  void unregister_buffer(void*) override {}

 protected:
  void enqueue(std::shared_ptr<IoJob> job) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      active_.push_back(std::move(job));
    }
    cv_.notify_all();
  }

 private:
  // Caller holds mutex_. Takes the next block round-robin over the jobs, or returns false.
  bool take_block(IoBlock& block) {
    while (!active_.empty() && !active_.front()->has_more()) active_.pop_front();
    if (active_.empty()) return false;
    std::shared_ptr<IoJob> job = std::move(active_.front());
    active_.pop_front();
    block = carve_block(job, options_.block_bytes);
    if (job->has_more()) active_.push_back(std::move(job));
    return true;
  }

  void run_worker() {
    for (;;) {
      IoBlock block;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return take_block(block) || stop_; });
        if (block.job == nullptr) return;  // stop_ and nothing left
      }
      BlockOutcome outcome = BlockOutcome::kRequeue;
      while (outcome == BlockOutcome::kRequeue) {
        const bool read = block.req().op == IoOp::kRead;
        ssize_t n = read ? ::pread(block.fd, block.buffer(), block.remaining(),
                                   static_cast<off_t>(block.offset()))
                         : ::pwrite(block.fd, block.buffer(), block.remaining(),
                                    static_cast<off_t>(block.offset()));
        const long res = n < 0 ? -static_cast<long>(errno) : static_cast<long>(n);
        std::lock_guard<std::mutex> lock(mutex_);
        if (block.job->failed && res >= 0) {  // its job is lost: stop early
          --block.job->outstanding;
          outcome = BlockOutcome::kDone;
        } else {
          outcome = settle_block(block, res, counters_);
        }
      }
      bool resolve = false;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        resolve = block.job->claim_resolution();
      }
      if (resolve) block.job->resolve();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<IoJob>> active_;
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace

std::unique_ptr<IoEngine> make_threads_engine(const IoOptions& options) {
  return std::make_unique<ThreadsEngine>(options);
}

}  // namespace sparsetrain::common::io
