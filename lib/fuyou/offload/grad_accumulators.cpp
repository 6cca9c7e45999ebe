// AccumulatorsInRam and AccumulatorsInStore (see grad_accumulators.h).
#include "fuyou/offload/grad_accumulators.h"

#include <algorithm>
#include <cstring>
#include <future>
#include <string>

#include "fuyou/offload/compute_link.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/store/tensor_store.h"

namespace sparsetrain::fuyou {

namespace {

using common::io::AlignedBuffer;

// Which of the block's tensors a drain carries: all of them, or one piece's (the others are
// undefined in job.grads).
std::vector<bool> carried(const DrainJob& job) {
  std::vector<bool> has;
  for (const at::Tensor& g : job.grads) has.push_back(g.defined());
  return has;
}

// The spans of `all` whose tensors the drain carries.
std::vector<TensorSpan> carried_spans(const std::vector<TensorSpan>& all,
                                      const std::vector<bool>& has) {
  std::vector<TensorSpan> spans;
  for (const TensorSpan& span : all) {
    if (has[span.tensor]) spans.push_back(span);
  }
  return spans;
}

// The block's norm terms (one per tensor, in tensor order) with the carried tensors' replaced.
void set_carried_terms(std::vector<at::Tensor>& terms, std::vector<at::Tensor> computed,
                       const std::vector<bool>& has) {
  terms.resize(has.size());
  for (std::size_t i = 0; i < has.size(); ++i) {
    if (has[i]) terms[i] = std::move(computed[i]);
  }
}

class AccumulatorsInRam final : public GradAccumulators {
 public:
  AccumulatorsInRam(const ModelConfig& config, const std::vector<UnitTensors>& units,
                    AlignedBuffer* grad_slots)
      : GradAccumulators(config.n_layer), units_(units), grad_slots_(grad_slots) {
    const auto cpu32 = at::TensorOptions().dtype(at::kFloat).device(at::kCPU);
    sums_.resize(static_cast<std::size_t>(config.n_layer));
    for (BlockWeights& block : sums_) {
      block = BlockWeights(static_cast<std::size_t>(block_tensor_count(config)));
      for (int i = 0; i < block.size(); ++i)
        block[i] = at::zeros(block_tensor_shape(config, i), cpu32);
    }
  }

  // Piece by piece: on CUDA through grad slot 0, which holds one piece and is free here (the
  // updates use the slots only between pops).
  void drain(DrainJob& job, ComputeTierLink& link, const std::function<void(int)>& release_slot,
             common::PhaseTimes&) override {
    const auto l = static_cast<std::size_t>(job.unit - 1);
    BlockWeights& acc = sums_[l];
    const UnitTensors& unit = units_[static_cast<std::size_t>(job.unit)];
    const std::vector<bool> has = carried(job);
    for (const StatePiece& piece : unit.pieces) {
      const std::vector<TensorSpan> spans = carried_spans(piece_spans(unit.numels, piece), has);
      if (spans.empty()) continue;
      std::vector<at::Tensor> host;
      for (const TensorSpan& span : spans) {
        host.push_back(flat_slice(job.grads[span.tensor], span.tensor_offset, span.floats));
      }
      const bool copied = link.fetch(host, spans, reinterpret_cast<float*>(grad_slots_[0].data()),
                                     job.ready, /*phases=*/nullptr);
      if (copied && piece.index + 1 == static_cast<std::int64_t>(unit.pieces.size())) {
        job.grads.clear();
        release_slot(job.pool_slot);  // all of it is in pinned memory or added up
        job.pool_slot = -1;
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
    release_slot(job.pool_slot);
    job.pool_slot = -1;
    // The in-memory trainer's expression, on the CPU (its reduction order differs from the GPU's:
    // the norm, hence a clipping factor, may differ in the last bits).
    if (job.norm) {
      std::vector<at::Tensor> terms(has.size());
      for (std::size_t i = 0; i < has.size(); ++i) {
        if (has[i]) terms[i] = acc[static_cast<int>(i)].pow(2).sum().to(at::kDouble);
      }
      set_carried_terms(norm_terms(job.unit - 1), std::move(terms), has);
    }
  }
  std::vector<at::Tensor> update_grads(std::int64_t layer) override {
    const BlockWeights& acc = sums_[static_cast<std::size_t>(layer)];
    return {acc.tensors.begin(), acc.tensors.end()};
  }
  std::vector<at::Tensor> piece_grads(const UpdateJob& job, std::size_t,
                                      const std::vector<TensorSpan>& spans,
                                      common::PhaseTimes&) override {
    std::vector<at::Tensor> grads;
    for (const TensorSpan& span : spans) {
      grads.push_back(flat_slice(job.grads[span.tensor], span.tensor_offset, span.floats));
    }
    return grads;
  }

 private:
  const std::vector<UnitTensors>& units_;
  AlignedBuffer* grad_slots_;
  std::vector<BlockWeights> sums_;  // fp32 CPU, one per block
};

class AccumulatorsInStore final : public GradAccumulators {
 public:
  AccumulatorsInStore(const ModelConfig& config, const std::vector<UnitTensors>& units,
                      std::int64_t piece_floats, AlignedBuffer* grad_slots, TensorStore& store,
                      OffloadStats& stats)
      : GradAccumulators(config.n_layer),
        config_(config),
        units_(units),
        piece_floats_(piece_floats),
        grad_slots_(grad_slots),
        store_(store),
        stats_(stats),
        stored_(segment_bytes(units[1].pieces[0].floats), /*pin=*/false) {
    for (std::int64_t l = 0; l < config.n_layer; ++l) {
      if (!store.contains(grad_store_name(l))) {
        // Rewritten every step before it is read: scratch (in place, one slot per extent).
        store.define(grad_store_name(l), StoreDType::kF32, {units[1].padded}, TensorKind::kScratch);
      }
    }
  }

  // Per piece: the incoming gradient lands in a grad slot (alternating; CUDA downloads it there,
  // the CPU tier copies it from the pool slot); from micro-batch 1 on the stored sum (read into
  // stored_ while the piece comes down; phase drain_read_wait) is added to it; it goes back to the
  // store, one write in flight, overlapping the next piece's download and read. Norm terms: each
  // tensor's spans' fp32 sums of squares added in double (one span per tensor, unless pieces cut
  // through it, is the RAM path's very expression).
  void drain(DrainJob& job, ComputeTierLink& link, const std::function<void(int)>& release_slot,
             common::PhaseTimes& phases) override {
    const UnitTensors& unit = units_[static_cast<std::size_t>(job.unit)];
    const std::string name = grad_store_name(job.unit - 1);
    const std::vector<bool> has = carried(job);
    std::vector<at::Tensor> terms;  // job.norm: per tensor, the sum of its spans' terms
    if (job.norm) {                 // one tensor each (assign would share one among them all)
      for (std::size_t i = 0; i < unit.numels.size(); ++i)
        terms.push_back(at::zeros({}, at::TensorOptions().dtype(at::kDouble)));
    }
    std::shared_future<void> write;  // the previous piece's, from the other grad slot
    auto* stored = reinterpret_cast<float*>(stored_.data());
    // Pieces 4·P bytes apart fill whole extents (always for power-of-two extents, as 12·P fills
    // them): no two pieces then share one.
    const bool whole_extents = segment_bytes(piece_floats_) % store_.extent_bytes() == 0;
    std::size_t turn = 0;  // the grad slots alternate by the pieces this drain writes
    for (const StatePiece& piece : unit.pieces) {
      const std::vector<TensorSpan> all = piece_spans(unit.numels, piece);
      const std::vector<TensorSpan> spans = carried_spans(all, has);
      if (spans.empty()) continue;
      // A block piece's drain (compute_blocks.h: StreamedPieces) may carry only part of a state
      // piece: the rest is read from the store and written back as it was.
      const bool partial = spans.size() != all.size();
      // This slot's last write (two pieces ago) ended before the previous piece's was issued.
      auto* base = reinterpret_cast<float*>(grad_slots_[turn++ % 2].data());
      std::vector<at::Tensor> incoming, pool;
      for (const TensorSpan& span : spans) {
        incoming.push_back(float_span(base + span.piece_offset, span.floats));
        pool.push_back(flat_slice(job.grads[span.tensor], span.tensor_offset, span.floats));
      }
      const std::uint64_t offset = piece.grad_byte_offset(piece_floats_);
      const std::uint64_t bytes = piece.master_bytes();
      std::shared_future<void> stored_read;  // the stored sum, read while g_k comes down
      if (!job.first || partial) {
        if (write.valid() && !whole_extents) {
          // The previous piece's write may still be rewriting an extent this piece shares.
          auto t = phases.scope("grad_write_wait");
          write.get();
        }
        stored_read = store_.read(name, stored, offset, bytes);
        stats_.ssd_read_bytes += bytes;
      }
      if (partial) {
        auto t = phases.scope("drain_read_wait");
        stored_read.get();
        std::memcpy(base, stored, bytes);  // the spans this drain does not carry, as stored
      }
      link.copy(pool, incoming, job.ready);
      if (piece.index + 1 == static_cast<std::int64_t>(unit.pieces.size())) {
        pool.clear();
        job.grads.clear();
        release_slot(job.pool_slot);  // all of it is in the grad slot now
        job.pool_slot = -1;
        // The unit's padding (after its last tensor) goes to the store as zeros, not as whatever
        // the slot last held: the stored bytes, and their checksums, are then deterministic.
        const std::int64_t used = all.empty() ? 0 : all.back().piece_offset + all.back().floats;
        std::fill(base + used, base + piece.floats, 0.0f);
      }
      if (!job.first) {
        // g_k + sum: the same IEEE additions as the RAM accumulator's sum + g_k.
        {
          auto t = phases.scope("drain_read_wait");
          stored_read.get();
        }
        for (std::size_t k = 0; k < spans.size(); ++k)
          incoming[k].add_(float_span(stored + spans[k].piece_offset, spans[k].floats));
      }
      if (job.norm) {
        for (std::size_t k = 0; k < spans.size(); ++k)
          terms[spans[k].tensor] += incoming[k].pow(2).sum().to(at::kDouble);
      }
      if (write.valid()) {
        // One write in flight: unless pieces fill whole extents, a piece may share its edge
        // extent with the next, whose read-modify-write must see it.
        auto t = phases.scope("grad_write_wait");
        write.get();
      }
      write = store_.write(name, base, offset, bytes);
      stats_.ssd_write_bytes += bytes;
    }
    if (write.valid()) {
      auto t = phases.scope("grad_write_wait");
      write.get();  // the update (or the next drain) reads it back
    }
    job.grads.clear();
    release_slot(job.pool_slot);
    job.pool_slot = -1;
    if (job.norm) set_carried_terms(norm_terms(job.unit - 1), std::move(terms), has);
  }
  std::vector<at::Tensor> update_grads(std::int64_t) override { return {}; }

  // Read piece by piece into the grad slots, the next piece prefetched when its gradients are
  // final: a piece of the same unit (the unit's update job is popped, the drains before it done),
  // or any once every drain of the step is done (clipping: before the first update). Drains use
  // both grad slots, so no prefetch crosses into a unit while a drain may still come.
  void start_step(const std::vector<UnitPiece>& pieces) override {
    pieces_ = &pieces;
    for (auto& read : reads_) read = {};
  }
  void prefetch(std::size_t s, bool last_piece, bool drains_done) override {
    if (stored(s) && !reads_[s % 2].valid()) issue_read(s);  // not prefetched
    if (stored(s + 1) && (!last_piece || drains_done)) issue_read(s + 1);
  }
  std::vector<at::Tensor> piece_grads(const UpdateJob&, std::size_t s,
                                      const std::vector<TensorSpan>& spans,
                                      common::PhaseTimes& phases) override {
    ST_ASSERT(reads_[s % 2].valid(), "a stored gradient piece was never read");
    {
      auto t = phases.scope("grad_read_wait");
      reads_[s % 2].get();
      reads_[s % 2] = {};
    }
    auto* base = reinterpret_cast<float*>(grad_slots_[s % 2].data());
    std::vector<at::Tensor> grads;
    for (const TensorSpan& span : spans)
      grads.push_back(float_span(base + span.piece_offset, span.floats));
    return grads;
  }

 private:
  bool stored(std::size_t s) const {
    return s < pieces_->size() && is_block_unit(config_, (*pieces_)[s].unit);
  }
  void issue_read(std::size_t s) {
    const UnitPiece& p = (*pieces_)[s];
    reads_[s % 2] = store_.read(grad_store_name(p.unit - 1), grad_slots_[s % 2].data(),
                                p.piece.grad_byte_offset(piece_floats_), p.piece.master_bytes());
    stats_.ssd_read_bytes += p.piece.master_bytes();
  }

  const ModelConfig& config_;
  const std::vector<UnitTensors>& units_;
  const std::int64_t piece_floats_;
  AlignedBuffer* grad_slots_;
  TensorStore& store_;
  OffloadStats& stats_;
  AlignedBuffer stored_;  // one piece of a stored sum, read while the incoming piece comes down
  const std::vector<UnitPiece>* pieces_ = nullptr;
  std::shared_future<void> reads_[2];  // the update's, by slot
};

}  // namespace

std::unique_ptr<GradAccumulators> make_accumulators_in_ram(const ModelConfig& config,
                                                           const std::vector<UnitTensors>& units,
                                                           AlignedBuffer* grad_slots) {
  return std::make_unique<AccumulatorsInRam>(config, units, grad_slots);
}

std::unique_ptr<GradAccumulators> make_accumulators_in_store(
    const ModelConfig& config, const std::vector<UnitTensors>& units, std::int64_t piece_floats,
    AlignedBuffer* grad_slots, TensorStore& store, OffloadStats& stats) {
  return std::make_unique<AccumulatorsInStore>(config, units, piece_floats, grad_slots, store,
                                               stats);
}

}  // namespace sparsetrain::fuyou
