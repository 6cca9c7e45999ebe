// ResidentBlocks and StreamedBlocks (see compute_blocks.h).
#include "fuyou/offload/compute_blocks.h"

#include "fuyou/offload/block_stream.h"
#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/offload/state_placement.h"

namespace sparsetrain::fuyou {

namespace {

class ResidentBlocks final : public ComputeBlocks {
 public:
  explicit ResidentBlocks(const std::vector<BlockWeights>& blocks) : blocks_(blocks) {}
  void start(std::vector<std::int64_t>) override {}
  const BlockWeights& acquire(std::int64_t l) override {
    return blocks_[static_cast<std::size_t>(l)];
  }
  void release() override {}
  void add_stats(OffloadStats&) const override {}

 private:
  const std::vector<BlockWeights>& blocks_;
};

class StreamedBlocks final : public ComputeBlocks {
 public:
  StreamedBlocks(std::unique_ptr<BlockStream> stream, bool from_store)
      : stream_(std::move(stream)), from_store_(from_store) {}
  void start(std::vector<std::int64_t> sequence) override { stream_->start(std::move(sequence)); }
  const BlockWeights& acquire(std::int64_t l) override { return stream_->acquire(l); }
  void release() override { stream_->release(); }
  void add_stats(OffloadStats& stats) const override {
    stats.stream_read_bytes = stream_->loaded_bytes();
    stats.stream_wait_seconds = stream_->wait_seconds();
    if (from_store_) stats.ssd_read_bytes += stats.stream_read_bytes;
    stats.pcie_h2d_bytes += cuda_block_slots_uploaded_bytes(stream_->slots());
  }

 private:
  std::unique_ptr<BlockStream> stream_;
  bool from_store_;  // the loads read the store (counted as SSD reads too)
};

}  // namespace

std::unique_ptr<ComputeBlocks> make_resident_blocks(const std::vector<BlockWeights>& blocks) {
  return std::make_unique<ResidentBlocks>(blocks);
}

std::unique_ptr<ComputeBlocks> make_streamed_blocks(const ModelConfig& config, std::int64_t slots,
                                                    std::int64_t piece_floats, bool cuda,
                                                    StatePlacement& states) {
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
  return std::make_unique<StreamedBlocks>(std::move(stream), states.in_store());
}

}  // namespace sparsetrain::fuyou
