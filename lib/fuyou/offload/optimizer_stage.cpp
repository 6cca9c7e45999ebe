// OffloadTrainer::OptimizerStage (see optimizer_stage.h).
#include "fuyou/offload/optimizer_stage.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <future>

#include "fuyou/optim/cpu_adam.h"
#include "fuyou/store/tensor_store.h"
#include "fuyou/train/in_memory_trainer.h"

namespace sparsetrain::fuyou {

void OffloadTrainer::OptimizerStage::loop() {
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

OffloadTrainer::OptimizerStage::Job OffloadTrainer::OptimizerStage::pop_job(std::int64_t unit) {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) throw common::RunError("offloaded training stopped mid-step", "");
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (!job.drain) {
      ST_ASSERT(job.unit == unit, "optimizer units arrived out of order");
      return job;
    }
    drain(job);
  }
}

void OffloadTrainer::OptimizerStage::drain(Job& job) {
  {
    auto t = phases_.scope("drain");
    if (t_.impl_->grads_in_store) {
      drain_into_store(job);
    } else {
      drain_into_ram(job);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++drained_;
  }
  cv_.notify_all();
}

void OffloadTrainer::OptimizerStage::drain_into_ram(Job& job) {
  Impl& impl = *t_.impl_;
  const auto l = static_cast<std::size_t>(job.unit - 1);
  BlockWeights& acc = impl.host_block_grads[l];
  const UnitTensors& unit = impl.units[static_cast<std::size_t>(job.unit)];
  // Piece by piece: on CUDA through grad_slots[0], which holds one piece and is free here (the
  // updates use the pinned slots only between pops).
  for (const StatePiece& piece : unit.pieces) {
    const std::vector<TensorSpan> spans = piece_spans(unit.numels, piece);
    std::vector<at::Tensor> host;
    for (const TensorSpan& span : spans) {
      host.push_back(flat_slice(job.grads[span.tensor], span.tensor_offset, span.floats));
    }
    if (impl.cuda) {
      std::vector<at::Tensor> gpu = std::move(host);
      host.clear();
      auto* base = reinterpret_cast<float*>(impl.grad_slots[0].data());
      for (const TensorSpan& span : spans) {
        host.push_back(float_span(base + span.piece_offset, span.floats));
        t_.stats_.pcie_d2h_bytes += 4 * static_cast<std::uint64_t>(span.floats);
      }
      transfer_->download(gpu, host, job.ready);
      if (piece.index + 1 == static_cast<std::int64_t>(unit.pieces.size())) {
        job.grads.clear();
        release_pool_slot(job.pool_slot);  // all of it is in pinned memory or added up
        job.pool_slot = -1;
      }
    }
    for (std::size_t k = 0; k < spans.size(); ++k) {
      at::Tensor dst = flat_slice(acc[static_cast<int>(spans[k].tensor)], spans[k].tensor_offset,
                                  spans[k].floats);
      if (job.first) {
        dst.copy_(host[k]);
      } else {
        dst.add_(host[k]);
      }
    }
  }
  job.grads.clear();
  release_pool_slot(job.pool_slot);
  if (job.norm) {
    // The in-memory trainer's expression, on the CPU (its reduction order differs from the
    // GPU's: the norm, hence a clipping factor, may differ in the last bits).
    std::vector<at::Tensor> terms;
    for (const at::Tensor& g : acc.tensors) terms.push_back(g.pow(2).sum().to(at::kDouble));
    impl.block_norm_terms[l] = std::move(terms);
  }
}

void OffloadTrainer::OptimizerStage::drain_into_store(Job& job) {
  Impl& impl = *t_.impl_;
  TensorStore& store = *t_.store_;
  const UnitTensors& unit = impl.units[static_cast<std::size_t>(job.unit)];
  const std::string name = grad_store_name(job.unit - 1);
  std::vector<at::Tensor> norm_terms;  // job.norm: per tensor, the sum of its spans' terms
  if (job.norm) {  // one tensor each (assign would share one among them all)
    for (std::size_t i = 0; i < unit.numels.size(); ++i)
      norm_terms.push_back(at::zeros({}, at::TensorOptions().dtype(at::kDouble)));
  }
  std::shared_future<void> write;  // the previous piece's, from the other grad slot
  auto* stored = reinterpret_cast<float*>(impl.grad_read.data());  // one piece of the stored sum
  // Pieces 4·P bytes apart fill whole extents (always for power-of-two extents, as 12·P fills
  // them): no two pieces then share one.
  const bool whole_extents =
      (4 * static_cast<std::uint64_t>(impl.piece_floats)) % store.extent_bytes() == 0;
  for (const StatePiece& piece : unit.pieces) {
    const std::vector<TensorSpan> spans = piece_spans(unit.numels, piece);
    // This slot's last write (two pieces ago) ended before the previous piece's write was issued.
    auto* base = reinterpret_cast<float*>(impl.grad_slots[piece.index % 2].data());
    std::vector<at::Tensor> incoming, pool;
    for (const TensorSpan& span : spans) {
      incoming.push_back(float_span(base + span.piece_offset, span.floats));
      pool.push_back(flat_slice(job.grads[span.tensor], span.tensor_offset, span.floats));
    }
    const std::uint64_t offset = grad_piece_offset(piece);
    const std::uint64_t bytes = 4 * static_cast<std::uint64_t>(piece.floats);
    std::shared_future<void> stored_read;  // the stored sum, read while g_k comes down
    if (!job.first) {
      if (write.valid() && !whole_extents) {
        // The previous piece's write may still be rewriting an extent this piece shares.
        auto t = phases_.scope("grad_write_wait");
        write.get();
      }
      stored_read = store.read(name, stored, offset, bytes);
      t_.stats_.ssd_read_bytes += bytes;
    }
    if (impl.cuda) {
      for (const TensorSpan& span : spans)
        t_.stats_.pcie_d2h_bytes += 4 * static_cast<std::uint64_t>(span.floats);
      transfer_->download(pool, incoming, job.ready);
    } else {
      for (std::size_t k = 0; k < spans.size(); ++k) incoming[k].copy_(pool[k]);
    }
    const bool last_piece = piece.index + 1 == static_cast<std::int64_t>(unit.pieces.size());
    if (last_piece) {
      pool.clear();
      job.grads.clear();
      release_pool_slot(job.pool_slot);  // all of it is in the grad slot now
      job.pool_slot = -1;
      // The unit's padding (after its last tensor) goes to the store as zeros, not as whatever
      // the slot last held: the stored bytes, and their checksums, are then deterministic.
      const std::int64_t used = spans.empty() ? 0 : spans.back().piece_offset + spans.back().floats;
      std::fill(base + used, base + piece.floats, 0.0f);
    }
    if (!job.first) {
      // g_k + sum: the same IEEE additions as the RAM accumulator's sum + g_k.
      {
        auto t = phases_.scope("drain_read_wait");
        stored_read.get();
      }
      for (std::size_t k = 0; k < spans.size(); ++k)
        incoming[k].add_(float_span(stored + spans[k].piece_offset, spans[k].floats));
    }
    if (job.norm) {
      for (std::size_t k = 0; k < spans.size(); ++k)
        norm_terms[spans[k].tensor] += incoming[k].pow(2).sum().to(at::kDouble);
    }
    if (write.valid()) {
      // One write in flight: unless pieces fill whole extents, a piece may share its edge extent
      // with the next, whose read-modify-write must see it.
      auto t = phases_.scope("grad_write_wait");
      write.get();
    }
    write = store.write(name, base, offset, bytes);
    t_.stats_.ssd_write_bytes += bytes;
  }
  if (write.valid()) {
    auto t = phases_.scope("grad_write_wait");
    write.get();  // the update (or the next drain) reads it back
  }
  job.grads.clear();
  release_pool_slot(job.pool_slot);
  job.pool_slot = -1;
  if (job.norm) impl.block_norm_terms[static_cast<std::size_t>(job.unit - 1)] = std::move(norm_terms);
}

void OffloadTrainer::OptimizerStage::release_pool_slot(int slot) {
  if (slot < 0) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pool_busy_[slot] = false;
  }
  cv_.notify_all();
}

void OffloadTrainer::OptimizerStage::run_step() {
  Impl& impl = *t_.impl_;
  TensorStore& store = *t_.store_;
  const bool in_cpu = t_.plan_.states_in_cpu;
  // States in RAM reach the store only on commit steps; states in the store every step.
  const bool commit =
      !in_cpu || step_ % t_.options_.commit_every == 0 || step_ == t_.train_.steps;
  // Every unit's state pieces in processing order; the staging slots alternate by piece.
  struct Piece {
    std::size_t i;  // the unit's place in impl.order
    StatePiece piece;
  };
  std::vector<Piece> pieces;
  for (std::size_t i = 0; i < impl.order.size(); ++i) {
    for (const StatePiece& piece : impl.units[impl.order[i]].pieces) pieces.push_back({i, piece});
  }
  const std::size_t n = pieces.size();
  std::shared_future<void> reads[2], writes[2];
  std::vector<std::shared_future<void>> cpu_writes;
  auto unit_at = [&](std::size_t s) { return impl.order[pieces[s].i]; };
  auto base_of = [&](std::size_t s) {
    return in_cpu ? reinterpret_cast<float*>(impl.cpu_states[unit_at(s)].data()) +
                        3 * pieces[s].piece.first
                  : reinterpret_cast<float*>(impl.staging[s % 2].data());
  };
  auto bytes_of = [&](std::size_t s) {
    return std::uint64_t{12} * static_cast<std::uint64_t>(pieces[s].piece.floats);
  };
  auto offset_of = [&](std::size_t s) { return pieces[s].piece.byte_offset(impl.piece_floats); };
  auto wait = [&](std::shared_future<void>& f, const char* phase) {
    if (!f.valid()) return;
    auto t = phases_.scope(phase);
    f.get();
    f = {};
  };
  auto issue_read = [&](std::size_t s) {
    reads[s % 2] = store.read(unit_store_name(unit_at(s)), base_of(s), offset_of(s), bytes_of(s));
    t_.stats_.ssd_read_bytes += bytes_of(s);
  };
  // A block's gradients in the store (Impl::grads_in_store): read piece by piece into the grad
  // slots, the next piece prefetched when its gradients are final: a piece of the same unit (the
  // unit's update job is popped, the drains before it done), or any once every drain of the step
  // is done (clipping: before the first update). Drains use both grad slots, so no prefetch
  // crosses into a unit while a drain may still come.
  std::shared_future<void> grad_reads[2];
  const std::int64_t step_drains = t_.train_.accum * t_.config_.n_layer;
  auto stored_grads = [&](std::size_t s) {
    return impl.grads_in_store && s < n && unit_at(s) >= 1 && unit_at(s) <= t_.config_.n_layer;
  };
  auto issue_grad_read = [&](std::size_t s) {
    const StatePiece& piece = pieces[s].piece;
    const std::uint64_t bytes = 4 * static_cast<std::uint64_t>(piece.floats);
    grad_reads[s % 2] = store.read(
        grad_store_name(unit_at(s) - 1), impl.grad_slots[s % 2].data(),
        grad_piece_offset(piece), bytes);
    t_.stats_.ssd_read_bytes += bytes;
  };
  if (!in_cpu && n > 0) issue_read(0);
  Job job;                             // the current unit's gradients
  for (std::size_t s = 0; s < n; ++s) {
    if (!in_cpu && s + 1 < n) {
      wait(writes[(s + 1) % 2], "write_wait");  // the slot's previous piece is on disk
      issue_read(s + 1);                        // prefetch the next piece's states
    }
    if (!in_cpu) wait(reads[s % 2], "read_wait");
    const std::size_t i = pieces[s].i;
    const StatePiece& piece = pieces[s].piece;
    const UnitTensors& unit = impl.units[impl.order[i]];
    const bool last_piece = piece.index + 1 == static_cast<std::int64_t>(unit.pieces.size());
    if (piece.index == 0) {
      auto t = phases_.scope("grad_wait");
      job = pop_job(impl.order[i]);
    }
    // This piece's gradients (grads[k] for spans[k]) and where AdamW writes its new compute
    // weights (outs[k]): in place (CPU tier), or a pinned bf16 slot that then goes up to the GPU.
    // A streamed block's new weights are not written: its next load converts its master.
    const std::vector<TensorSpan> spans = piece_spans(unit.numels, piece);
    std::vector<at::Tensor> grads, outs;
    if (stored_grads(s) && !grad_reads[s % 2].valid()) issue_grad_read(s);  // not prefetched
    if (stored_grads(s + 1) && (!last_piece || drains_done() == step_drains)) issue_grad_read(s + 1);
    if (job.host && impl.grads_in_store) {
      wait(grad_reads[s % 2], "grad_read_wait");
      auto* grad_base = reinterpret_cast<float*>(impl.grad_slots[s % 2].data());
      for (const TensorSpan& span : spans)
        grads.push_back(float_span(grad_base + span.piece_offset, span.floats));
    } else {
      for (const TensorSpan& span : spans) {
        grads.push_back(flat_slice(job.grads[span.tensor], span.tensor_offset, span.floats));
      }
    }
    if (impl.cuda) {
      if (!job.host) {  // else: already in the block's CPU accumulator
        // Down into pinned fp32 memory, one piece at a time; the GPU accumulators are free
        // again once the last piece is copied.
        std::vector<at::Tensor> gpu = std::move(grads);
        grads.clear();
        auto* grad_base = reinterpret_cast<float*>(impl.grad_slots[s % 2].data());
        for (const TensorSpan& span : spans) {
          grads.push_back(float_span(grad_base + span.piece_offset, span.floats));
          t_.stats_.pcie_d2h_bytes += 4 * static_cast<std::uint64_t>(span.floats);
        }
        {
          auto t = phases_.scope("download");
          transfer_->download(gpu, grads, job.ready);
        }
        // The GPU buffer is free once the last piece is down: after the AdamW of the unit's
        // other pieces (a whole-unit download freed it before any AdamW, but needed a pinned
        // slot of one unit). On the H200 a 1.3B block's backward (~70 ms) outlasts a block's
        // AdamW (~8 ms), so the backward should not wait for it; grad_slot_wait shows if it does.
        if (last_piece) {
          release_pool_slot(job.pool_slot);
          job.pool_slot = -1;
        }
      }
      if (!streamed(job.unit)) {
        {
          auto t = phases_.scope("upload_wait");  // the slot's previous weights are on the GPU
          CudaTransfer::wait(uploads_[s % 2]);
        }
        for (const TensorSpan& span : spans) {
          outs.push_back(
              bf16_span(impl.weight_pinned[s % 2].data() + 2 * span.piece_offset, span.floats));
        }
      }
    } else if (!streamed(job.unit)) {
      for (const TensorSpan& span : spans) {
        outs.push_back(flat_slice(*unit.compute[span.tensor], span.tensor_offset, span.floats));
      }
    }
    {
      auto t = phases_.scope("adam");
      float* base = base_of(s);
      for (std::size_t k = 0; k < spans.size(); ++k) {
        const TensorSpan& span = spans[k];
        at::Tensor master = float_span(base + span.piece_offset, span.floats);
        at::Tensor m = float_span(base + piece.floats + span.piece_offset, span.floats);
        at::Tensor v = float_span(base + 2 * piece.floats + span.piece_offset, span.floats);
        if (job.scaled) grads[k].mul_(job.scale);
        adamw_step(adam_options_for(t_.train_, unit.names[span.tensor], lr_), step_, master, m,
                   v, grads[k], outs.empty() ? nullptr : &outs[k], t_.train_.isa);
      }
    }
    if (impl.cuda && !streamed(job.unit)) {
      std::vector<at::Tensor> gpu;
      for (const TensorSpan& span : spans) {
        gpu.push_back(flat_slice(*unit.compute[span.tensor], span.tensor_offset, span.floats));
        t_.stats_.pcie_h2d_bytes += 2 * static_cast<std::uint64_t>(span.floats);
      }
      uploads_[s % 2] = transfer_->upload(outs, gpu);
    }
    if (last_piece) {  // the unit is done
      if (impl.in_backward.load()) ++t_.stats_.units_updated_during_backward;
      release_pool_slot(job.pool_slot);
      job = Job{};
    }
    if (!commit) continue;
    auto f = store.write(unit_store_name(unit_at(s)), base_of(s), offset_of(s), bytes_of(s));
    t_.stats_.ssd_write_bytes += bytes_of(s);
    if (in_cpu) {
      cpu_writes.push_back(std::move(f));
    } else {
      writes[s % 2] = std::move(f);
    }
  }
  {
    // The next forward must see every new weight.
    auto t = phases_.scope("upload_wait");
    for (CudaMark& mark : uploads_) {
      CudaTransfer::wait(mark);
      mark.reset();
    }
  }
  for (auto& f : writes) wait(f, "write_wait");
  for (auto& f : cpu_writes) wait(f, "write_wait");
  if (!commit) return;
  auto* meta = reinterpret_cast<std::int64_t*>(impl.meta.data());
  meta[kMetaStep] = step_;
  {
    auto t = phases_.scope("commit");
    store.write(kMetaName, meta, 0, kMetaLen * sizeof(std::int64_t)).get();
    store.commit();
  }
  ++t_.stats_.commits;
}

}  // namespace sparsetrain::fuyou
