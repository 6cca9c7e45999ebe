// BlockStream's sequencing — the part the CPU tier and the CUDA tier share — against a recording
// slot backend (no CUDA needed): blocks are filled in the order of use, round-robin over the
// slots; a slot is never refilled before the compute thread has ended its previous use (on CUDA:
// before the event recorded at release, which the backend's fill waits for); the loader runs
// ahead by up to K - 1 blocks and no further; a loader error reaches the compute thread.
#include "fuyou/offload/block_stream.h"

#include <ATen/ops/full.h>
#include <ATen/ops/randn.h>
#include <c10/util/BFloat16.h>
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fuyou/model/block_activations.h"
#include "fuyou/offload/cuda_transfer.h"

using namespace sparsetrain::fuyou;

namespace {

// Each slot is free -> filled (loader) -> in use (compute thread) -> free; any other transition is
// recorded as a violation. The slot's one tensor carries the block id it was filled with.
class RecordingSlots final : public BlockStream::Slots {
 public:
  RecordingSlots(std::int64_t count, std::int64_t fail_at = -1)
      : state_(static_cast<std::size_t>(count), kFree), fail_at_(fail_at) {
    for (std::int64_t s = 0; s < count; ++s) {
      BlockWeights view;
      view[0] = at::full({1}, -1.0);
      views_.push_back(view);
    }
  }
  std::int64_t count() const override { return static_cast<std::int64_t>(state_.size()); }
  std::uint64_t fill(std::int64_t slot, std::int64_t block) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (static_cast<std::int64_t>(fills_.size()) == fail_at_) throw std::runtime_error("disk gone");
    auto& st = state_[static_cast<std::size_t>(slot)];
    if (st != kFree) ++violations_;
    st = kFilled;
    views_[static_cast<std::size_t>(slot)][0].fill_(static_cast<double>(block));
    fills_.push_back({slot, block});
    int filled = 0;
    for (State x : state_) filled += x == kFilled;
    max_filled_ = std::max(max_filled_, filled);
    return 10;
  }
  const BlockWeights& use(std::int64_t slot) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& st = state_[static_cast<std::size_t>(slot)];
    if (st != kFilled) ++violations_;
    st = kInUse;
    return views_[static_cast<std::size_t>(slot)];
  }
  void end_use(std::int64_t slot) override {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& st = state_[static_cast<std::size_t>(slot)];
    if (st != kInUse) ++violations_;
    st = kFree;
  }

  enum State { kFree, kFilled, kInUse };
  std::mutex mutex_;
  std::vector<State> state_;
  std::vector<BlockWeights> views_;
  std::vector<std::pair<std::int64_t, std::int64_t>> fills_;  // (slot, block)
  int violations_ = 0, max_filled_ = 0;
  std::int64_t fail_at_;
};

}  // namespace

TEST_CASE("a training step's sequence is forward 0..L-1 then backward L-1..0, per micro-batch") {
  CHECK(BlockStream::training_sequence(3, 2) ==
        std::vector<std::int64_t>{0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0});
  CHECK(BlockStream::forward_sequence(2, 2) == std::vector<std::int64_t>{0, 1, 0, 1});
}

TEST_CASE("in pieces, a block's backward uses the pieces its recompute reads, then 3..0") {
  // Access ids l · 5 + p (5: the most pieces of either family): GPT-2 block 0's pieces are 0-3,
  // block 1's 5-8. Block 1 keeps nothing (its recompute reads pieces 0-2), block 0 keeps resid
  // (pieces 0 and 2).
  const ModelConfig gpt2;
  const PieceFlags all = recompute_pieces(gpt2, {});
  const PieceFlags resid = recompute_pieces(gpt2, ActivationSet().with(kAttnResidual));
  CHECK(BlockStream::training_piece_sequence(2, 1, {resid, all}, kGpt2BlockPieces) ==
        std::vector<std::int64_t>{0, 1, 2, 3, 5, 6, 7, 8,  // forward
                                  5, 6, 7, 8, 7, 6, 5,     // block 1's backward
                                  0, 2, 3, 2, 1, 0});      // block 0's
  CHECK(BlockStream::forward_piece_sequence(2, 2, kGpt2BlockPieces) ==
        std::vector<std::int64_t>{0, 1, 2, 3, 5, 6, 7, 8, 0, 1, 2, 3, 5, 6, 7, 8});
  CHECK(BlockStream::piece_access(3, kMlpOutPiece) == 18);
  CHECK(BlockStream::access_block(18) == 3);
  CHECK(BlockStream::access_piece(18) == kMlpOutPiece);
  // Llama: 5 pieces, the recompute reads all but down_proj.
  ModelConfig llama = model_config_from_name("llama3.2-1b");
  CHECK(BlockStream::training_piece_sequence(1, 1, {recompute_pieces(llama, {})},
                                             kLlamaBlockPieces) ==
        std::vector<std::int64_t>{0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 3, 2, 1, 0});
}

TEST_CASE("blocks are filled in the order of use, round-robin, never over a slot in use") {
  auto owned = std::make_unique<RecordingSlots>(3);
  RecordingSlots& slots = *owned;
  BlockStream stream(std::move(owned));
  const std::vector<std::int64_t> sequence = BlockStream::training_sequence(4, 2);
  for (int pass = 0; pass < 2; ++pass) {
    stream.start(sequence);
    for (std::int64_t block : sequence) {
      const BlockWeights& w = stream.acquire(block);
      CHECK(w[0].item<double>() == static_cast<double>(block));     // the very block asked for
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // let the loader run ahead
      stream.release();
    }
  }
  std::lock_guard<std::mutex> lock(slots.mutex_);
  CHECK(slots.violations_ == 0);
  REQUIRE(slots.fills_.size() == 2 * sequence.size());
  for (std::size_t i = 0; i < slots.fills_.size(); ++i) {
    // Each pass starts over at slot 0 (every slot is free between passes).
    CHECK(slots.fills_[i].first == static_cast<std::int64_t>(i % sequence.size() % 3));
    CHECK(slots.fills_[i].second == sequence[i % sequence.size()]);
  }
  CHECK(stream.loads() == 2 * sequence.size());
  CHECK(stream.loaded_bytes() == 10 * 2 * sequence.size());
}

TEST_CASE("the loader fills every slot ahead while the compute thread holds the first block") {
  auto owned = std::make_unique<RecordingSlots>(3);
  RecordingSlots& slots = *owned;
  BlockStream stream(std::move(owned));
  stream.start(BlockStream::forward_sequence(6, 1));
  stream.acquire(0);
  // Blocks 1 and 2 go into the other two slots; block 3 needs slot 0, which is still in use.
  for (int i = 0; i < 20000 && stream.loads() < 3; ++i)  // up to 20 s on a loaded machine
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(stream.loads() == 3);
  stream.release();
  for (std::int64_t b = 1; b < 6; ++b) {
    stream.acquire(b);
    stream.release();
  }
  std::lock_guard<std::mutex> lock(slots.mutex_);
  CHECK(slots.violations_ == 0);
}

TEST_CASE("a loader error reaches the compute thread, at the latest at the block it failed on") {
  // The 4th fill (block 3) throws. With 2 slots the loader gets there only after block 1 is
  // released, possibly before block 2 is acquired: acquire rethrows the first error it sees (a
  // step fails fast), so the compute thread sees it at block 2 or 3, never at 0 or 1.
  BlockStream stream(std::make_unique<RecordingSlots>(2, /*fail_at=*/3));
  stream.start(BlockStream::forward_sequence(5, 1));
  std::int64_t failed_at = -1;
  for (std::int64_t b = 0; b < 5 && failed_at < 0; ++b) {
    try {
      stream.acquire(b);
      stream.release();
    } catch (const std::runtime_error& e) {
      CHECK(std::string(e.what()) == "disk gone");
      failed_at = b;
    }
  }
  CHECK(failed_at >= 2);
  CHECK(failed_at <= 3);
}

TEST_CASE("the CUDA loader's bf16 conversion rounds to nearest even exactly like c10::BFloat16") {
  // Random weights, exact ties (0x3F808000: halfway, even below; 0x3F818000: halfway, odd below),
  // subnormals, signed zeros, infinities, the largest float.
  std::vector<float> x(300000);
  const at::Tensor r = at::randn({static_cast<std::int64_t>(x.size())}) * 0.02;
  std::memcpy(x.data(), r.data_ptr<float>(), x.size() * sizeof(float));
  const std::uint32_t bits[] = {0x3F808000u, 0x3F818000u, 0x00000001u, 0x00408000u, 0x80000000u,
                                0x7F800000u, 0xFF800000u, 0x7F7FFFFFu, 0x807FFFFFu};
  for (std::size_t i = 0; i < sizeof bits / sizeof bits[0]; ++i) std::memcpy(&x[i], &bits[i], 4);
  std::vector<std::uint16_t> got(x.size());
  fp32_to_bf16_rne(x.data(), got.data(), static_cast<std::int64_t>(x.size()));
  std::size_t differ = 0;
  for (std::size_t i = 0; i < x.size(); ++i) differ += got[i] != c10::BFloat16(x[i]).x;
  CHECK(differ == 0);
  CHECK(got[0] == 0x3F80);  // tie, even below: down
  CHECK(got[1] == 0x3F82);  // tie, odd below: up
  CHECK(got[2] == 0x0000);  // the smallest subnormal rounds to +0
  CHECK(got[3] == 0x0040);  // a subnormal survives (0x00408000 is a tie with even 0x0040 below)
  CHECK(got[4] == 0x8000);
  CHECK(got[7] == 0x7F80);  // the largest float rounds up to +inf, as in torch
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::uint16_t nan_bits = 0;
  fp32_to_bf16_rne(&nan, &nan_bits, 1);
  CHECK(nan_bits == 0x7FC0);
}
