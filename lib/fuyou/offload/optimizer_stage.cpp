// OptimizerStage (see optimizer_stage.h).
#include "fuyou/offload/optimizer_stage.h"

#include <ATen/ATen.h>

#include "common/error.h"
#include "fuyou/offload/compute_link.h"
#include "fuyou/offload/offload_internals.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/optim/cpu_adam.h"
#include "fuyou/store/tensor_store.h"
#include "fuyou/train/train_options.h"

namespace sparsetrain::fuyou {

OptimizerStage::OptimizerStage(OffloadState& state, TensorStore& store, const TrainOptions& train,
                               std::int64_t commit_every, OffloadStats& stats)
    : state_(state),
      store_(store),
      train_(train),
      commit_every_(commit_every),
      stats_(stats),
      link_(state.cuda ? make_cuda_link(state.weight_slots, stats) : make_cpu_link()),
      thread_([this] { loop(); }) {}

OptimizerStage::~OptimizerStage() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void OptimizerStage::start_step(std::int64_t step, double lr, std::size_t first_piece) {
  std::lock_guard<std::mutex> lock(mutex_);
  step_ = step;
  lr_ = lr;
  first_piece_ = first_piece;
  step_active_ = true;
  step_done_ = false;
  drained_ = 0;
  pool_busy_[0] = pool_busy_[1] = false;
  cv_.notify_all();
}

void OptimizerStage::submit(OptimizerJob job) {
  std::lock_guard<std::mutex> lock(mutex_);
  jobs_.push_back(std::move(job));
  cv_.notify_all();
}

int OptimizerStage::acquire_pool_slot() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return error_ || !pool_busy_[0] || !pool_busy_[1]; });
  rethrow_locked();
  const int slot = pool_busy_[0] ? 1 : 0;
  pool_busy_[slot] = true;
  return slot;
}

void OptimizerStage::wait_drains(std::int64_t n) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return error_ || drained_ >= n; });
  rethrow_locked();
}

void OptimizerStage::wait_step_done() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return error_ || step_done_; });
  rethrow_locked();
}

void OptimizerStage::release_pool_slot(int slot) {
  if (slot < 0) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pool_busy_[slot] = false;
  }
  cv_.notify_all();
}

std::int64_t OptimizerStage::drains_done() {
  std::lock_guard<std::mutex> lock(mutex_);
  return drained_;
}

void OptimizerStage::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || step_active_; });
      if (stop_) return;
    }
    try {
      run_step();
      std::lock_guard<std::mutex> lock(mutex_);
      step_active_ = false;
      step_done_ = true;
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
      step_active_ = false;
    }
    cv_.notify_all();
    if (error_) return;
  }
}

UpdateJob OptimizerStage::pop_update(std::int64_t unit) {
  for (;;) {
    OptimizerJob job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) throw common::RunError("offloaded training stopped mid-step", "");
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (auto* update = std::get_if<UpdateJob>(&job)) {
      ST_ASSERT(update->unit == unit, "optimizer units arrived out of order");
      return std::move(*update);
    }
    if (auto* sealing = std::get_if<SealJob>(&job)) {
      seal(*sealing);
      continue;
    }
    drain(std::get<DrainJob>(job));
  }
}

void OptimizerStage::drain(DrainJob& job) {
  {
    auto t = phases_.scope("drain");
    state_.accumulators->drain(
        job, *link_, [this](int slot) { release_pool_slot(slot); }, phases_);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++drained_;
  }
  cv_.notify_all();
}

void OptimizerStage::seal(SealJob& job) {
  auto t = phases_.scope("seal");
  CudaTransfer::wait(job.ready);
  for (const auto& [name, tensors] : job.grads) {
    std::uint64_t offset = 0;
    for (const at::Tensor& grad : tensors) {
      // One after another: two tensors may share the extent where the first ends.
      const at::Tensor host = grad.to(at::kCPU).contiguous();
      const std::uint64_t bytes = segment_bytes(host.numel());
      store_.write(name, host.data_ptr(), offset, bytes).get();
      stats_.ssd_write_bytes += bytes;
      offset += bytes;
    }
  }
  job.grads.clear();
  state_.states->seal(job.step);  // syncs the store: these and the block accumulators are on disk
}

std::vector<at::Tensor> OptimizerStage::piece_grads(UpdateJob& job, std::size_t s,
                                                    const std::vector<TensorSpan>& spans,
                                                    bool last_piece) {
  if (state_.accumulators) {  // `drains_done` matters only at a unit's last piece
    state_.accumulators->prefetch(s, last_piece, last_piece && drains_done() == state_.step_drains);
  }
  if (job.drained) return state_.accumulators->piece_grads(job, s, spans, phases_);
  std::vector<at::Tensor> grads;
  for (const TensorSpan& span : spans) {
    grads.push_back(flat_slice(job.grads[span.tensor], span.tensor_offset, span.floats));
  }
  // CUDA: down into pinned memory, one piece at a time; the GPU buffer is free once the last
  // piece is down (after the AdamW of the unit's other pieces: on the H200 a 1.3B block's backward,
  // ~70 ms, outlasts a block's AdamW, ~8 ms, so the backward need not wait; grad_slot_wait shows
  // if it does).
  const bool copied = link_->fetch(
      grads, spans, reinterpret_cast<float*>(state_.grad_slots[s % 2].data()), job.ready, &phases_);
  if (copied && last_piece) {
    release_pool_slot(job.pool_slot);
    job.pool_slot = -1;
  }
  return grads;
}

void OptimizerStage::update_piece(const UpdateJob& job, const UnitTensors& unit,
                                  const StatePiece& piece, float* base,
                                  const std::vector<TensorSpan>& spans,
                                  std::vector<at::Tensor>& grads, std::vector<at::Tensor>& outs) {
  auto t = phases_.scope("adam");
  for (std::size_t k = 0; k < spans.size(); ++k) {
    const TensorSpan& span = spans[k];
    at::Tensor master = float_span(base + span.piece_offset, span.floats);
    at::Tensor m = float_span(base + piece.m_offset() + span.piece_offset, span.floats);
    at::Tensor v = float_span(base + piece.v_offset() + span.piece_offset, span.floats);
    if (job.scaled) grads[k].mul_(job.scale);
    adamw_step(adam_options_for(train_, unit.names[span.tensor], lr_), step_, master, m, v,
               grads[k], outs.empty() ? nullptr : &outs[k], train_.isa);
  }
}

void OptimizerStage::run_step() {
  StatePlacement& states = *state_.states;
  // States in RAM reach the store only on commit steps; states in the store every step.
  const bool commit = states.in_store() || step_ % commit_every_ == 0 || step_ == train_.steps;
  const std::vector<UnitPiece>& pieces = state_.step_pieces;
  const std::size_t first = first_piece_;
  states.start_step(pieces, first);
  if (state_.accumulators) state_.accumulators->start_step(pieces);
  UpdateJob job;  // the current unit's gradients
  for (std::size_t s = first; s < pieces.size(); ++s) {
    float* base = states.acquire(s, phases_);
    const StatePiece& piece = pieces[s].piece;
    const UnitTensors& unit = state_.units[static_cast<std::size_t>(pieces[s].unit)];
    const bool last_piece = piece.index + 1 == static_cast<std::int64_t>(unit.pieces.size());
    if (piece.index == 0 || s == first) {
      auto t = phases_.scope("grad_wait");
      job = pop_update(pieces[s].unit);
    }
    const std::vector<TensorSpan> spans = piece_spans(unit.numels, piece);
    std::vector<at::Tensor> grads = piece_grads(job, s, spans, last_piece);
    std::vector<at::Tensor> outs;
    if (unit.published) outs = link_->outputs(unit, spans, s, phases_);
    update_piece(job, unit, piece, base, spans, grads, outs);
    if (unit.published) link_->publish(unit, spans, outs, s);
    if (last_piece) {  // the unit is done
      if (state_.in_backward.load()) ++stats_.units_updated_during_backward;
      release_pool_slot(job.pool_slot);
      job = UpdateJob{};
    }
    states.release(s, commit);
  }
  link_->finish_step(phases_);  // the next forward must see every new weight
  states.finish_step(phases_);
  if (commit) commit_step();
}

void OptimizerStage::commit_step() {
  auto* meta = reinterpret_cast<std::int64_t*>(state_.meta.data());
  meta[kMetaStep] = step_;
  {
    auto t = phases_.scope("commit");
    store_
        .write(kMetaName, meta, 0,
               static_cast<std::uint64_t>(state_.meta_len) * sizeof(std::int64_t))
        .get();
    store_.commit();
  }
  ++stats_.commits;
}

}  // namespace sparsetrain::fuyou
