// OffloadTrainer::OptimizerStage, the offloaded trainer's optimizer thread (offload_trainer.h):
// the compute thread submits each unit's gradients as a Job; this thread prefetches the units'
// state pieces from the store in processing order, runs AdamW on them as their gradients arrive,
// publishes the new compute weights, writes the states back and commits at the end of the step.
// On CUDA it also drains streamed blocks' gradients into their CPU accumulators. Included by
// offload_trainer.cpp only.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/timer.h"
#include "fuyou/offload/offload_internals.h"

namespace sparsetrain::fuyou {

class OffloadTrainer::OptimizerStage {
 public:
  struct Job {
    std::int64_t unit = 0;
    std::vector<at::Tensor> grads;  // in the unit's tensor order (CPU, or GPU accumulators)
    double scale = 1.0;             // clipping factor, applied when `scaled`
    bool scaled = false;
    int pool_slot = -1;  // block gradient pool slot to give back, or -1
    CudaMark ready;      // CUDA: the gradients are final once the compute stream reaches it
    // Impl::host_grads only. A drain: `grads` (a GPU pool slot) hold one micro-batch's gradients
    // of block unit - 1; download them and copy (`first`, micro-batch 0) or add them into the
    // block's CPU accumulator, then (`norm`) compute its norm terms. Not an update.
    bool drain = false, first = false, norm = false;
    // An update of a block whose gradients were drained: `grads` are its CPU accumulator, or
    // empty when the accumulators are in the store (the update reads them back piece by piece).
    bool host = false;
  };

  explicit OptimizerStage(OffloadTrainer& trainer)
      : t_(trainer),
        transfer_(trainer.impl_->cuda ? std::make_unique<CudaTransfer>() : nullptr),
        thread_([this] { loop(); }) {}
  ~OptimizerStage() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void start_step(std::int64_t step, double lr) {
    std::lock_guard<std::mutex> lock(mutex_);
    step_ = step;
    lr_ = lr;
    step_active_ = true;
    step_done_ = false;
    drained_ = 0;
    pool_busy_[0] = pool_busy_[1] = false;
    cv_.notify_all();
  }
  void submit(Job job) {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(std::move(job));
    cv_.notify_all();
  }
  // Compute thread: a free block-gradient pool slot (waits for the optimizer to release one).
  int acquire_pool_slot() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return error_ || !pool_busy_[0] || !pool_busy_[1]; });
    rethrow_locked();
    const int slot = pool_busy_[0] ? 1 : 0;
    pool_busy_[slot] = true;
    return slot;
  }
  // Compute thread: waits until `n` drains of this step are done (their accumulators and norm terms
  // are then final).
  void wait_drains(std::int64_t n) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return error_ || drained_ >= n; });
    rethrow_locked();
  }
  void wait_step_done() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return error_ || step_done_; });
    rethrow_locked();
  }
  common::PhaseTimes& phases() { return phases_; }

 private:
  void rethrow_locked() {
    if (error_) std::rethrow_exception(error_);
  }
  bool streamed(std::int64_t unit) const {
    return t_.impl_->streaming && unit >= 1 && unit <= t_.config_.n_layer;
  }

  // The thread's body: one run_step per start_step, until stopped; an error ends it and reaches
  // the compute thread through its next wait.
  void loop();

  // The next update job, which must be `unit`'s; drains queued before it are done on the way.
  Job pop_job(std::int64_t unit);

  // One micro-batch's gradients of a streamed block: GPU pool slot -> pinned fp32 -> the block's
  // accumulator, in RAM (drain_into_ram) or in the store (drain_into_store); CPU tier: straight
  // from the pool slot. Counts the drain for wait_drains. Sum order, per element:
  // ((g_0 + g_1) + g_2) + …, each g_k the bf16 gradient widened to fp32 (exact) and added in fp32 —
  // the in-memory trainer's GPU accumulator does the very same IEEE additions in the same order (0
  // + g_0 on micro-batch 0: the pool slot is zeroed and accumulated into on the GPU exactly as
  // there), so the sum is bit for bit the same.
  void drain(Job& job);
  void drain_into_ram(Job& job);  // Impl::host_block_grads
  // drain when the accumulators are in the store (Impl::grads_in_store): per piece, the incoming
  // gradient lands in a grad slot (alternating; CUDA downloads it there, the CPU tier copies it
  // from the pool slot), from micro-batch 1 on the stored sum (read into Impl::grad_read while
  // the piece comes down; phase drain_read_wait) is added to it, and it goes back to the store,
  // one write in flight, overlapping the next piece's download and read. Norm terms (`norm`): each tensor's spans' fp32 sums of
  // squares added in double (one span per tensor, unless pieces cut through it, is the RAM path's
  // very expression).
  void drain_into_store(Job& job);
  // Byte offset of a block piece in its grad_store_name tensor (offload_internals.h): 4·P·p.
  std::uint64_t grad_piece_offset(const StatePiece& piece) const {
    return 4 * static_cast<std::uint64_t>(t_.impl_->piece_floats) *
           static_cast<std::uint64_t>(piece.index);
  }

  // Gives a block gradient pool slot back to the compute thread (-1: none).
  void release_pool_slot(int slot);

  // Drains done this step (this thread does them; the lock is for the compute thread's reads).
  std::int64_t drains_done() {
    std::lock_guard<std::mutex> lock(mutex_);
    return drained_;
  }

  // One optimizer step over every unit's state pieces: prefetch, AdamW, write back, commit.
  void run_step();

  OffloadTrainer& t_;
  std::unique_ptr<CudaTransfer> transfer_;  // CUDA: the optimizer thread's copy stream
  CudaMark uploads_[2];                     // CUDA: the last upload out of each weight slot
  common::PhaseTimes phases_;  // touched by the optimizer thread only (read after it is idle)
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::int64_t step_ = 0;
  double lr_ = 0;
  bool step_active_ = false, step_done_ = false, stop_ = false;
  std::int64_t drained_ = 0;  // drains done this step
  bool pool_busy_[2] = {false, false};
  std::exception_ptr error_;
  std::thread thread_;  // last: starts after every member above exists
};

}  // namespace sparsetrain::fuyou
