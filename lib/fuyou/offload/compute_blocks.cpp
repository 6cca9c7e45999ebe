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

// A whole block's backward over weights held for the call.
at::Tensor whole_backward(const ModelConfig& config, const BlockWeights& weights,
                          const at::Tensor& input, const at::Tensor& output_grad,
                          const BlockGradsFn& take) {
  BlockGrads grads = block_backward(config, weights, input, output_grad);
  take(kWholeBlock, grads.weight_grads);
  return std::move(grads.input_grad);
}

class ResidentBlocks final : public ComputeBlocks {
 public:
  ResidentBlocks(const ModelConfig& config, const std::vector<BlockWeights>& blocks)
      : config_(config), blocks_(blocks) {}
  void start_training(std::int64_t) override {}
  void start_forward(std::int64_t) override {}
  at::Tensor forward(std::int64_t l, const at::Tensor& x) override {
    return block_forward(config_, blocks_[static_cast<std::size_t>(l)], x);
  }
  at::Tensor backward(std::int64_t l, const at::Tensor& input, const at::Tensor& output_grad,
                      const BlockGradsFn& take) override {
    return whole_backward(config_, blocks_[static_cast<std::size_t>(l)], input, output_grad, take);
  }
  void add_stats(OffloadStats&) const override {}

 private:
  const ModelConfig config_;
  const std::vector<BlockWeights>& blocks_;
};

// What both streamed placements share: the stream, the order of its passes' accesses (whole
// blocks' or pieces'), and its counters.
class Streamed : public ComputeBlocks {
 public:
  using SequenceFn = std::vector<std::int64_t> (*)(std::int64_t layers, std::int64_t count);
  Streamed(const ModelConfig& config, std::unique_ptr<BlockStream> stream, bool from_store,
           SequenceFn training, SequenceFn forward)
      : config_(config),
        stream_(std::move(stream)),
        from_store_(from_store),
        training_(training),
        forward_(forward) {}
  void start_training(std::int64_t accum) override {
    stream_->start(training_(config_.n_layer, accum));
  }
  void start_forward(std::int64_t passes) override {
    stream_->start(forward_(config_.n_layer, passes));
  }
  void add_stats(OffloadStats& stats) const override {
    stats.stream_read_bytes = stream_->loaded_bytes();
    stats.stream_wait_seconds = stream_->wait_seconds();
    if (from_store_) stats.ssd_read_bytes += stats.stream_read_bytes;
    stats.pcie_h2d_bytes += cuda_block_slots_uploaded_bytes(stream_->slots());
  }

 protected:
  const ModelConfig config_;
  std::unique_ptr<BlockStream> stream_;

 private:
  const bool from_store_;  // the loads read the store (counted as SSD reads too)
  const SequenceFn training_, forward_;
};

class StreamedBlocks final : public Streamed {
 public:
  StreamedBlocks(const ModelConfig& config, std::unique_ptr<BlockStream> stream, bool from_store)
      : Streamed(config, std::move(stream), from_store, &BlockStream::training_sequence,
                 &BlockStream::forward_sequence) {}
  at::Tensor forward(std::int64_t l, const at::Tensor& x) override {
    at::Tensor out = block_forward(config_, stream_->acquire(l), x);
    stream_->release();
    return out;
  }
  at::Tensor backward(std::int64_t l, const at::Tensor& input, const at::Tensor& output_grad,
                      const BlockGradsFn& take) override {
    // The gradients are computed before the slot goes back (take may wait for a pool slot).
    BlockGrads grads = block_backward(config_, stream_->acquire(l), input, output_grad);
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
  StreamedPieces(const ModelConfig& config, std::unique_ptr<BlockStream> stream, bool from_store)
      : Streamed(config, std::move(stream), from_store, &BlockStream::training_piece_sequence,
                 &BlockStream::forward_piece_sequence) {}
  at::Tensor forward(std::int64_t l, const at::Tensor& x) override {
    StreamPieceSource source(*stream_, l);
    return block_forward_pieces(config_, source, x);
  }
  at::Tensor backward(std::int64_t l, const at::Tensor& input, const at::Tensor& output_grad,
                      const BlockGradsFn& take) override {
    StreamPieceSource source(*stream_, l);
    BlockPieceInputs inputs;
    {
      at::NoGradGuard no_grad;  // the pieces' inputs, as block_backward's graphs start from
      inputs = block_piece_inputs(config_, source, input);
    }
    return block_backward_pieces(config_, source, inputs, output_grad, take);
  }
};

}  // namespace

std::unique_ptr<ComputeBlocks> make_resident_blocks(const ModelConfig& config,
                                                    const std::vector<BlockWeights>& blocks) {
  return std::make_unique<ResidentBlocks>(config, blocks);
}

std::unique_ptr<ComputeBlocks> make_streamed_blocks(const ModelConfig& config, std::int64_t slots,
                                                    std::int64_t piece_floats, bool cuda,
                                                    std::int64_t pieces_per_block,
                                                    StatePlacement& states) {
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
    return std::make_unique<StreamedPieces>(config, std::move(stream), states.in_store());
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
  return std::make_unique<StreamedBlocks>(config, std::move(stream), states.in_store());
}

}  // namespace sparsetrain::fuyou
