// ResidentBlocks, StreamedBlocks and StreamedPieces (see compute_blocks.h).
#include "fuyou/offload/compute_blocks.h"

#include <ATen/core/grad_mode.h>

#include "common/error.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/offload/block_stream.h"
#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/offload/state_placement.h"

namespace sparsetrain::fuyou {

namespace {

// What every placement shares: the policy, and the count of the recompute's FLOPs.
class PolicyBlocks : public ComputeBlocks {
 public:
  PolicyBlocks(const ModelConfig& config, ActivationPolicy policy)
      : config_(config), policy_(std::move(policy)) {
    ST_ASSERT(static_cast<std::int64_t>(policy_.kept.size()) == config_.n_layer,
              "an activation policy needs a set per block");
  }
  double recompute_flops() const override { return recompute_flops_; }

 protected:
  ActivationSet keep(std::int64_t l) const { return policy_.kept[static_cast<std::size_t>(l)]; }
  // Called once per backward of block l that recomputes from `kept`.
  void count_recompute(const BlockActivations& kept) {
    recompute_flops_ +=
        block_recompute_flops_per_token(config_, policy_.seq, kept.set, policy_.cuda) *
        static_cast<double>(policy_.tokens);
  }
  const std::vector<ActivationSet>& kept_sets() const { return policy_.kept; }

  const ModelConfig config_;

 private:
  const ActivationPolicy policy_;
  double recompute_flops_ = 0;
};

class ResidentBlocks final : public PolicyBlocks {
 public:
  ResidentBlocks(const ModelConfig& config, const std::vector<BlockWeights>& blocks,
                 ActivationPolicy policy)
      : PolicyBlocks(config, std::move(policy)), blocks_(blocks) {}
  void start_training(std::int64_t) override {}
  void start_forward(std::int64_t) override {}
  at::Tensor forward(std::int64_t l, const at::Tensor& x, BlockActivations* kept) override {
    return block_forward(config_, blocks_[static_cast<std::size_t>(l)], x, keep(l), kept);
  }
  at::Tensor backward(std::int64_t l, const at::Tensor& input, const BlockActivations& kept,
                      const at::Tensor& output_grad, const BlockGradsFn& take) override {
    count_recompute(kept);
    BlockGrads grads =
        block_backward(config_, blocks_[static_cast<std::size_t>(l)], input, output_grad, kept);
    take(kWholeBlock, grads.weight_grads);
    return std::move(grads.input_grad);
  }
  void add_stats(OffloadStats&) const override {}

 private:
  const std::vector<BlockWeights>& blocks_;
};

// What both streamed placements share: the stream, the order of its passes' accesses (whole
// blocks' or pieces'), and its counters.
class Streamed : public PolicyBlocks {
 public:
  Streamed(const ModelConfig& config, ActivationPolicy policy, std::unique_ptr<BlockStream> stream,
           bool from_store)
      : PolicyBlocks(config, std::move(policy)),
        stream_(std::move(stream)),
        from_store_(from_store) {}
  void add_stats(OffloadStats& stats) const override {
    stats.stream_read_bytes = stream_->loaded_bytes();
    stats.stream_wait_seconds = stream_->wait_seconds();
    if (from_store_) stats.ssd_read_bytes += stats.stream_read_bytes;
    stats.pcie_h2d_bytes += cuda_block_slots_uploaded_bytes(stream_->slots());
  }

 protected:
  std::unique_ptr<BlockStream> stream_;

 private:
  const bool from_store_;  // the loads read the store (counted as SSD reads too)
};

class StreamedBlocks final : public Streamed {
 public:
  using Streamed::Streamed;
  void start_training(std::int64_t accum) override {
    stream_->start(BlockStream::training_sequence(config_.n_layer, accum));
  }
  void start_forward(std::int64_t passes) override {
    stream_->start(BlockStream::forward_sequence(config_.n_layer, passes));
  }
  at::Tensor forward(std::int64_t l, const at::Tensor& x, BlockActivations* kept) override {
    at::Tensor out = block_forward(config_, stream_->acquire(l), x, keep(l), kept);
    stream_->release();
    return out;
  }
  at::Tensor backward(std::int64_t l, const at::Tensor& input, const BlockActivations& kept,
                      const at::Tensor& output_grad, const BlockGradsFn& take) override {
    count_recompute(kept);
    // The gradients are computed before the slot goes back (take may wait for a pool slot).
    BlockGrads grads = block_backward(config_, stream_->acquire(l), input, output_grad, kept);
    stream_->release();
    take(kWholeBlock, grads.weight_grads);
    return std::move(grads.input_grad);
  }
};

// Block l's pieces as the stream hands them out, in the sequence's order.
class StreamPieceSource final : public BlockPieceSource {
 public:
  StreamPieceSource(BlockStream& stream, std::int64_t block) : stream_(stream), block_(block) {}
  const BlockWeights& acquire(int piece) override {
    return stream_.acquire(BlockStream::piece_access(block_, piece));
  }
  void release() override { stream_.release(); }

 private:
  BlockStream& stream_;
  const std::int64_t block_;
};

class StreamedPieces final : public Streamed {
 public:
  using Streamed::Streamed;
  void start_training(std::int64_t accum) override {
    std::vector<PieceFlags> recompute;
    for (const ActivationSet& kept : kept_sets())
      recompute.push_back(recompute_pieces(config_, kept));
    stream_->start(BlockStream::training_piece_sequence(config_.n_layer, accum, recompute,
                                                        config_.block_piece_count()));
  }
  void start_forward(std::int64_t passes) override {
    stream_->start(
        BlockStream::forward_piece_sequence(config_.n_layer, passes, config_.block_piece_count()));
  }
  at::Tensor forward(std::int64_t l, const at::Tensor& x, BlockActivations* kept) override {
    StreamPieceSource source(*stream_, l);
    return block_forward_pieces(config_, source, x, keep(l), kept);
  }
  at::Tensor backward(std::int64_t l, const at::Tensor& input, const BlockActivations& kept,
                      const at::Tensor& output_grad, const BlockGradsFn& take) override {
    count_recompute(kept);
    StreamPieceSource source(*stream_, l);
    return block_backward_pieces(config_, source, input, output_grad, kept, take);
  }
};

}  // namespace

std::unique_ptr<ComputeBlocks> make_resident_blocks(const ModelConfig& config,
                                                    const std::vector<BlockWeights>& blocks,
                                                    ActivationPolicy policy) {
  return std::make_unique<ResidentBlocks>(config, blocks, std::move(policy));
}

std::unique_ptr<ComputeBlocks> make_streamed_blocks(const ModelConfig& config, std::int64_t slots,
                                                    std::int64_t piece_floats, bool cuda,
                                                    std::int64_t pieces_per_block,
                                                    StatePlacement& states,
                                                    ActivationPolicy policy) {
  if (pieces_per_block > 1) {
    // A piece's fp32 weights are a float range of its block's master (CUDA: converted to bf16
    // and uploaded chunk by chunk).
    BlockStream::RangeReadFn read = [&states](std::int64_t block, std::int64_t first,
                                              std::int64_t floats, float* dst) {
      states.gather_master_range(1 + block, first, floats, dst);
    };
    auto stream = std::make_unique<BlockStream>(
        cuda ? make_cuda_piece_slots(config, slots, piece_floats, std::move(read))
             : BlockStream::host_piece_slots(config, slots, std::move(read)));
    return std::make_unique<StreamedPieces>(config, std::move(policy), std::move(stream),
                                            states.in_store());
  }
  std::unique_ptr<BlockStream> stream;
  if (cuda) {
    // Piece by piece, converted to bf16 and uploaded: a piece's master segment from RAM without a
    // copy, or read from the store into the slots' piece buffer.
    stream = std::make_unique<BlockStream>(make_cuda_block_slots(
        config, slots, piece_floats, states.in_store(),
        [&states](std::int64_t block, const StatePiece& piece, float* scratch) {
          return states.master(1 + block, piece, scratch);
        }));
  } else {
    // A block's fp32 weights are the master segments of its state pieces, gathered into its slot.
    stream = std::make_unique<BlockStream>(
        config, slots,
        [&states](std::int64_t block, float* dst) { states.gather_master(1 + block, dst); });
  }
  return std::make_unique<StreamedBlocks>(config, std::move(policy), std::move(stream),
                                          states.in_store());
}

}  // namespace sparsetrain::fuyou
