// StepGradients and the three block-gradient placements (see block_grads.h).
#include "fuyou/offload/block_grads.h"

#include <array>
#include <cmath>
#include <utility>

#include "common/error.h"
#include "fuyou/offload/compute_blocks.h"
#include "fuyou/offload/grad_accumulators.h"
#include "fuyou/offload/optimizer_stage.h"
#include "fuyou/train/data_parallel.h"

namespace sparsetrain::fuyou {

StepGradients::StepGradients(OptimizerStage& stage, std::size_t units, double grad_clip, bool defer,
                             std::function<CudaMark()> mark, common::PhaseTimes& phases,
                             std::unique_ptr<common::PhaseTimes::Scope>& backward)
    : stage_(stage),
      grad_clip_(grad_clip),
      defer_(defer || grad_clip > 0),
      mark_(std::move(mark)),
      phases_(phases),
      backward_(backward),
      norm_terms_(units),
      deferred_(units),
      drained_(units, false) {}

void StepGradients::add_norm_terms(std::int64_t unit, const std::vector<at::Tensor>& grads) {
  for (const at::Tensor& g : grads) {
    norm_terms_[static_cast<std::size_t>(unit)].push_back(g.pow(2).sum().to(at::kDouble));
  }
}

void StepGradients::set_norm_terms(std::int64_t unit, std::vector<at::Tensor> terms) {
  norm_terms_[static_cast<std::size_t>(unit)] = std::move(terms);
}

void StepGradients::sum_over_ranks(const std::vector<at::Tensor>& grads) {
  if (ranks_) outside_backward("rank_sum", [&] { ranks_->sum(grads); });
}

double StepGradients::sum_over_ranks(double value) {
  if (ranks_) outside_backward("rank_sum", [&] { value = ranks_->sum(value); });
  return value;
}

void StepGradients::outside_backward(const char* phase, const std::function<void()>& wait) {
  backward_.reset();
  {
    auto t = phases_.scope(phase);
    wait();
  }
  backward_ = std::make_unique<common::PhaseTimes::Scope>(phases_, "backward");
}

void StepGradients::finish(std::int64_t unit, std::vector<at::Tensor> grads, int pool_slot) {
  sum_over_ranks(grads);
  if (defer_) {
    ST_ASSERT(pool_slot < 0, "deferred gradients cannot hold a pool slot until the norm");
    deferred_[static_cast<std::size_t>(unit)] = std::move(grads);
    return;
  }
  add_norm_terms(unit, grads);
  // CUDA: the optimizer's download waits for this point of the compute stream, not the host.
  UpdateJob job;
  job.unit = unit;
  job.grads = std::move(grads);
  job.pool_slot = pool_slot;
  job.ready = mark_();
  stage_.submit(std::move(job));
}

void StepGradients::finish_drained(std::int64_t unit, std::vector<at::Tensor> grads) {
  drained_[static_cast<std::size_t>(unit)] = true;
  if (defer_) {
    deferred_[static_cast<std::size_t>(unit)] = std::move(grads);
    return;
  }
  UpdateJob job;
  job.unit = unit;
  job.grads = std::move(grads);
  job.drained = true;
  stage_.submit(std::move(job));
}

int StepGradients::acquire_pool_slot() {
  int slot = -1;
  outside_backward("grad_slot_wait", [&] { slot = stage_.acquire_pool_slot(); });
  return slot;
}

void StepGradients::drain(std::int64_t unit, std::vector<at::Tensor> grads, int pool_slot,
                          bool first, bool norm) {
  DrainJob job;
  job.unit = unit;
  job.grads = std::move(grads);
  job.pool_slot = pool_slot;
  job.ready = mark_();
  job.first = first;
  job.norm = norm;
  stage_.submit(std::move(job));
}

void StepGradients::wait_drains(std::int64_t n) {
  auto t = phases_.scope("drain_wait");  // every block's gradients are in CPU memory
  stage_.wait_drains(n);
}

double StepGradients::finish_backward(const at::Tensor& like,
                                      const std::vector<std::int64_t>& order) {
  const bool clip = grad_clip_ > 0;
  if (defer_) {  // drained blocks' terms came through add_norm_terms / set_norm_terms
    for (std::size_t u = 0; u < deferred_.size(); ++u) {
      if (!drained_[u]) add_norm_terms(static_cast<std::int64_t>(u), deferred_[u]);
    }
  }
  at::Tensor sq = at::zeros({}, like.options().dtype(at::kDouble));
  for (const auto& terms : norm_terms_) {  // on the compute tier or in CPU memory
    for (const at::Tensor& term : terms) sq += term.to(sq.device());
  }
  const double norm = std::sqrt(sq.item<double>());
  if (!defer_) return norm;
  const bool scaled = clip && norm > grad_clip_;
  const double scale = clip ? grad_clip_ / (norm + 1e-6) : 1.0;
  if (seal_) seal_(norm, scale, scaled);
  const CudaMark ready = mark_();
  for (std::int64_t unit : order) {
    const auto u = static_cast<std::size_t>(unit);
    UpdateJob job;
    job.unit = unit;
    job.grads = std::move(deferred_[u]);
    job.scale = scale;
    job.scaled = scaled;
    job.ready = ready;
    job.drained = drained_[u];
    stage_.submit(std::move(job));
  }
  return norm;
}

namespace {

std::vector<BlockWeights> make_buffers(const ModelConfig& config, const at::TensorOptions& fp32,
                                       std::int64_t count) {
  std::vector<BlockWeights> buffers(static_cast<std::size_t>(count));
  for (BlockWeights& block : buffers) {
    block = BlockWeights(static_cast<std::size_t>(block_tensor_count(config)));
    for (int i = 0; i < block.size(); ++i)
      block[i] = at::zeros(block_tensor_shape(config, i), fp32);
  }
  return buffers;
}

std::vector<at::Tensor> tensors_of(const BlockWeights& block) {
  return {block.tensors.begin(), block.tensors.end()};
}

void zero(BlockWeights& block) {
  for (at::Tensor& g : block.tensors) g.zero_();
}

void accumulate_into(BlockWeights& acc, const BlockWeights& grads) {
  for (int i = 0; i < acc.size(); ++i) accumulate(acc[i], grads[i]);
}

class ResidentBlockGrads final : public BlockGradients {
 public:
  ResidentBlockGrads(const ModelConfig& config, const at::TensorOptions& fp32)
      : buffers_(make_buffers(config, fp32, config.n_layer)) {}
  void start_step() override {
    for (BlockWeights& block : buffers_) zero(block);
  }
  void take(std::int64_t l, std::int64_t, bool last, int piece, const BlockWeights& grads,
            StepGradients& step) override {
    ST_ASSERT(piece == kWholeBlock, "resident block gradients come whole");
    BlockWeights& acc = buffers_[static_cast<std::size_t>(l)];
    accumulate_into(acc, grads);
    if (last) step.finish(1 + l, tensors_of(acc), -1);
  }

 private:
  std::vector<BlockWeights> buffers_;  // one per block
};

class PooledBlockGrads final : public BlockGradients {
 public:
  PooledBlockGrads(const ModelConfig& config, const at::TensorOptions& fp32, std::int64_t buffers)
      : pool_(make_buffers(config, fp32, buffers)) {}
  void take(std::int64_t l, std::int64_t, bool last, int piece, const BlockWeights& grads,
            StepGradients& step) override {
    ST_ASSERT(last, "a block gradient pool without drains needs K = 1");
    ST_ASSERT(piece == kWholeBlock, "pooled block gradients come whole");
    const int slot = step.acquire_pool_slot();
    BlockWeights& acc = pool_[static_cast<std::size_t>(slot)];
    zero(acc);
    accumulate_into(acc, grads);
    step.finish(1 + l, tensors_of(acc), slot);
  }

 private:
  std::vector<BlockWeights> pool_;  // 2, by turns
};

// Buffers of the largest piece, each with views of every piece's tensors over its memory.
std::vector<BlockPieceViews> make_piece_buffers(const ModelConfig& config,
                                                const at::TensorOptions& fp32, std::int64_t count) {
  std::vector<BlockPieceViews> buffers;
  for (std::int64_t b = 0; b < count; ++b) {
    buffers.push_back(
        block_piece_views(config, at::zeros({config.max_block_piece_param_count()}, fp32)));
  }
  return buffers;
}

class DrainedBlockGrads final : public BlockGradients {
 public:
  DrainedBlockGrads(const ModelConfig& config, const at::TensorOptions& fp32, std::int64_t buffers,
                    std::int64_t accum, std::int64_t pieces_per_block,
                    GradAccumulators& accumulators)
      : config_(config),
        layers_(config.n_layer),
        accum_(accum),
        drains_per_block_(pieces_per_block > 1 ? config.block_piece_count() : 1),
        pieces_(config.block_piece_count()),
        tensors_(block_tensor_count(config)),
        accumulators_(accumulators),
        norm_terms_(static_cast<std::size_t>(tensors_)) {
    if (pieces_per_block > 1) {
      piece_pool_ = make_piece_buffers(config, fp32, buffers);
      next_piece_ = pieces_ - 1;
    } else {
      pool_ = make_buffers(config, fp32, buffers);
    }
  }
  void take(std::int64_t l, std::int64_t k, bool last, int piece, const BlockWeights& grads,
            StepGradients& step) override {
    // Pieces come last … 0 (gpt_model.h: block_backward_pieces): the block is done at piece 0.
    ST_ASSERT((piece == kWholeBlock) == piece_pool_.empty() && piece == next_piece_,
              "block piece gradients out of order");
    if (piece != kWholeBlock) next_piece_ = piece == 0 ? pieces_ - 1 : piece - 1;
    const int slot = step.acquire_pool_slot();
    const auto s = static_cast<std::size_t>(slot);
    BlockWeights& acc =
        piece == kWholeBlock ? pool_[s] : piece_pool_[s][static_cast<std::size_t>(piece)];
    const TensorRange range =
        piece == kWholeBlock ? TensorRange{0, tensors_} : block_piece_tensors(config_, piece);
    std::vector<at::Tensor> slot_grads(static_cast<std::size_t>(tensors_));  // others undefined
    for (int i = range.first; i < range.last; ++i) {
      const at::Tensor& g = grads[i];
      if (k > 0) {
        // Only g_k, widened to fp32: the drain adds it to the CPU-side accumulator.
        if (g.defined()) {
          acc[i].copy_(g);
        } else {
          acc[i].zero_();
        }
      } else {
        acc[i].zero_();
        accumulate(acc[i], g);
      }
      slot_grads[static_cast<std::size_t>(i)] = acc[i];
    }
    // K = 1: the pool slot holds the final gradient (data parallel: once summed over the ranks);
    // its norm terms come from the compute tier, as in the in-memory trainer (in tensor order,
    // whatever order the pieces came in). K > 1: the drain computes them from the CPU-side sum.
    if (last && accum_ == 1) {
      step.sum_over_ranks(slot_grads);
      for (int i = range.first; i < range.last; ++i)
        norm_terms_[static_cast<std::size_t>(i)] = acc[i].pow(2).sum().to(at::kDouble);
    }
    // A block's backward ends with its whole gradient, or with its first piece's.
    const bool block_done = piece == kWholeBlock || piece == 0;
    if (last && accum_ == 1 && block_done) step.set_norm_terms(1 + l, norm_terms_);
    step.drain(1 + l, std::move(slot_grads), slot, /*first=*/k == 0,
               /*norm=*/last && accum_ > 1);
    if (last && block_done) step.finish_drained(1 + l, accumulators_.update_grads(l));
  }
  void finish_backward(StepGradients& step) override {
    step.wait_drains(accum_ * layers_ * drains_per_block_);
    if (accum_ == 1) return;
    for (std::int64_t l = 0; l < layers_; ++l)
      step.set_norm_terms(1 + l, accumulators_.norm_terms(l));
  }

 private:
  std::vector<BlockWeights> pool_;           // whole blocks: 2, by turns
  std::vector<BlockPieceViews> piece_pool_;  // pieces: 2, by turns
  const ModelConfig config_;
  const std::int64_t layers_, accum_, drains_per_block_;
  const int pieces_;   // per block (model_config.h: block_piece_count)
  const int tensors_;  // per block (model_weights.h: block_tensor_count)
  GradAccumulators& accumulators_;
  std::vector<at::Tensor> norm_terms_;  // K = 1: the block's, by tensor
  int next_piece_ = kWholeBlock;        // the piece take() must see next
};

}  // namespace

std::unique_ptr<BlockGradients> make_resident_block_grads(const ModelConfig& config,
                                                          const at::TensorOptions& fp32) {
  return std::make_unique<ResidentBlockGrads>(config, fp32);
}

std::unique_ptr<BlockGradients> make_pooled_block_grads(const ModelConfig& config,
                                                        const at::TensorOptions& fp32,
                                                        std::int64_t buffers) {
  return std::make_unique<PooledBlockGrads>(config, fp32, buffers);
}

std::unique_ptr<BlockGradients> make_drained_block_grads(const ModelConfig& config,
                                                         const at::TensorOptions& fp32,
                                                         std::int64_t buffers, std::int64_t accum,
                                                         std::int64_t pieces_per_block,
                                                         GradAccumulators& accumulators) {
  return std::make_unique<DrainedBlockGrads>(config, fp32, buffers, accum, pieces_per_block,
                                             accumulators);
}

}  // namespace sparsetrain::fuyou
