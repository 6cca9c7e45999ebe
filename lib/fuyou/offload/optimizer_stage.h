// The offloaded trainer's optimizer thread. The compute thread submits jobs (optimizer_jobs.h) in
// the order the backward finishes them; for each step this thread walks every unit's state pieces
// in processing order (ln_f, blocks L-1 … 0, embeddings): the states come through the
// StatePlacement (prefetched while the previous piece updates), the gradients from the compute
// tier through the ComputeTierLink or, for drained blocks, from the GradAccumulators; AdamW
// (cpu_adam.h) updates the piece, the link publishes the new compute weights, the placement writes
// the piece back; at the end of the step it commits the store (the checkpoint: states, weights,
// step) when the states are in the store or it is a commit step. Drain jobs queued before an
// update are done on the way to it. It owns no placement: they outlive it (OffloadState).
// Threads: every store call of a step happens on this thread; the compute thread only submits and
// waits (condition variables). An error ends the thread and reaches the compute thread through
// its next wait.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/timer.h"
#include "fuyou/offload/offload_units.h"
#include "fuyou/offload/optimizer_jobs.h"

namespace sparsetrain::fuyou {

struct OffloadState;
struct OffloadStats;
struct TrainOptions;
class ComputeTierLink;
class TensorStore;

class OptimizerStage {
 public:
  // `state`, `store`, `train` and `stats` must outlive the stage; commit_every: see OffloadOptions.
  OptimizerStage(OffloadState& state, TensorStore& store, const TrainOptions& train,
                 std::int64_t commit_every, OffloadStats& stats);
  ~OptimizerStage();
  OptimizerStage(const OptimizerStage&) = delete;
  OptimizerStage& operator=(const OptimizerStage&) = delete;

  // Compute thread: step `step` at learning rate `lr` begins (this thread starts prefetching), from
  // its state piece `first_piece` in processing order (a resumed step whose earlier pieces the
  // journal says are done, step_journal.h; else 0).
  void start_step(std::int64_t step, double lr, std::size_t first_piece = 0);
  void submit(OptimizerJob job);
  // Compute thread: a free block-gradient pool slot (waits for this thread to release one).
  int acquire_pool_slot();
  // Compute thread: waits until `n` drains of this step are done (their accumulators and norm
  // terms are then final).
  void wait_drains(std::int64_t n);
  void wait_step_done();
  // Gives a block gradient pool slot back to the compute thread (-1: none). Any thread.
  void release_pool_slot(int slot);
  common::PhaseTimes& phases() { return phases_; }  // read once the thread is idle

 private:
  void loop();
  void run_step();
  // The next update job, which must be `unit`'s; drains queued before it are done on the way.
  UpdateJob pop_update(std::int64_t unit);
  void drain(DrainJob& job);
  void seal(SealJob& job);
  // Piece s's gradients (one view per span), readable on the CPU.
  std::vector<at::Tensor> piece_grads(UpdateJob& job, std::size_t s,
                                      const std::vector<TensorSpan>& spans, bool last_piece);
  // AdamW over piece s's spans: `base` its [master | m | v], `outs` the new compute weights.
  void update_piece(const UpdateJob& job, const UnitTensors& unit, const StatePiece& piece,
                    float* base, const std::vector<TensorSpan>& spans,
                    std::vector<at::Tensor>& grads, std::vector<at::Tensor>& outs);
  void commit_step();
  std::int64_t drains_done();
  void rethrow_locked() {
    if (error_) std::rethrow_exception(error_);
  }

  OffloadState& state_;
  TensorStore& store_;
  const TrainOptions& train_;
  const std::int64_t commit_every_;
  OffloadStats& stats_;
  std::unique_ptr<ComputeTierLink> link_;  // made per stage: CUDA's holds a copy stream
  common::PhaseTimes phases_;              // touched by this thread only (read after it is idle)
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<OptimizerJob> jobs_;
  std::int64_t step_ = 0;
  double lr_ = 0;
  std::size_t first_piece_ = 0;
  bool step_active_ = false, step_done_ = false, stop_ = false;
  std::int64_t drained_ = 0;  // drains done this step
  bool pool_busy_[2] = {false, false};
  std::exception_ptr error_;
  std::thread thread_;  // last: starts after every member above exists
};

}  // namespace sparsetrain::fuyou
