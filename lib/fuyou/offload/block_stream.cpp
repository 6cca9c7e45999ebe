// BlockStream (see block_stream.h).
#include "fuyou/offload/block_stream.h"

#include <ATen/ops/from_blob.h>

#include <array>

#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "common/timer.h"
#include "fuyou/offload/offload_plan.h"

namespace sparsetrain::fuyou {

namespace {

// The CPU tier's slots: fp32 host memory, one padded block each, fp32 tensors over it.
class HostSlots final : public BlockStream::Slots {
 public:
  HostSlots(const ModelConfig& config, std::int64_t slots, BlockStream::ReadFn read)
      : slot_floats_(unit_padded_params(config, 1)), read_(std::move(read)) {
    const auto f32 = at::TensorOptions().dtype(at::kFloat);
    for (std::int64_t s = 0; s < slots; ++s) {
      memory_.emplace_back(4 * static_cast<std::size_t>(slot_floats_), /*pin=*/false);
      auto* base = reinterpret_cast<float*>(memory_.back().data());
      BlockWeights view(static_cast<std::size_t>(block_tensor_count(config)));
      std::int64_t offset = 0;
      for (int i = 0; i < view.size(); ++i) {
        view[i] = at::from_blob(base + offset, block_tensor_shape(config, i), f32);
        offset += view[i].numel();
      }
      views_.push_back(std::move(view));
    }
  }
  std::int64_t count() const override { return static_cast<std::int64_t>(memory_.size()); }
  std::uint64_t fill(std::int64_t slot, std::int64_t block) override {
    read_(block, reinterpret_cast<float*>(memory_[static_cast<std::size_t>(slot)].data()));
    return 4 * static_cast<std::uint64_t>(slot_floats_);
  }
  const BlockWeights& use(std::int64_t slot) override {
    return views_[static_cast<std::size_t>(slot)];
  }

 private:
  std::int64_t slot_floats_ = 0;
  BlockStream::ReadFn read_;
  std::vector<common::io::AlignedBuffer> memory_;
  std::vector<BlockWeights> views_;  // per slot: fp32 tensors over the slot's memory
};

// The CPU tier's slots in pieces: fp32 host memory of the largest piece each; per slot and piece,
// fp32 tensors of that piece's shapes over the slot's memory.
class HostPieceSlots final : public BlockStream::Slots {
 public:
  HostPieceSlots(const ModelConfig& config, std::int64_t slots, BlockStream::RangeReadFn read)
      : config_(config), read_(std::move(read)) {
    const auto f32 = at::TensorOptions().dtype(at::kFloat);
    const std::int64_t floats = config.max_block_piece_param_count();
    for (std::int64_t s = 0; s < slots; ++s) {
      memory_.emplace_back(4 * static_cast<std::size_t>(floats), /*pin=*/false);
      views_.push_back(
          block_piece_views(config, at::from_blob(memory_.back().data(), {floats}, f32)));
    }
    pieces_.assign(static_cast<std::size_t>(slots), 0);
  }
  std::int64_t count() const override { return static_cast<std::int64_t>(memory_.size()); }
  std::uint64_t fill(std::int64_t slot, std::int64_t access) override {
    const auto s = static_cast<std::size_t>(slot);
    const int piece = BlockStream::access_piece(access);
    const std::int64_t floats = config_.block_piece_param_count(piece);
    read_(BlockStream::access_block(access), config_.block_piece_first_param(piece), floats,
          reinterpret_cast<float*>(memory_[s].data()));
    pieces_[s] = piece;  // read by use(): BlockStream's mutex orders the two
    return 4 * static_cast<std::uint64_t>(floats);
  }
  const BlockWeights& use(std::int64_t slot) override {
    const auto s = static_cast<std::size_t>(slot);
    return views_[s][static_cast<std::size_t>(pieces_[s])];
  }

 private:
  const ModelConfig config_;
  BlockStream::RangeReadFn read_;
  std::vector<common::io::AlignedBuffer> memory_;
  std::vector<BlockPieceViews> views_;
  std::vector<int> pieces_;  // per slot: the piece it holds
};

}  // namespace

std::unique_ptr<BlockStream::Slots> BlockStream::host_piece_slots(const ModelConfig& config,
                                                                  std::int64_t slots,
                                                                  RangeReadFn read) {
  return std::make_unique<HostPieceSlots>(config, slots, std::move(read));
}

std::unique_ptr<BlockStream::Slots> BlockStream::host_slots(const ModelConfig& config,
                                                            std::int64_t slots, ReadFn read) {
  return std::make_unique<HostSlots>(config, slots, std::move(read));
}

BlockStream::BlockStream(std::unique_ptr<Slots> slots) : slots_(std::move(slots)) {
  ST_ASSERT(slots_ && slots_->count() >= 2, "a block stream needs at least two slots");
  slot_count_ = static_cast<std::size_t>(slots_->count());
  thread_ = std::thread([this] { loop(); });
}

BlockStream::~BlockStream() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::vector<std::int64_t> BlockStream::training_sequence(std::int64_t layers, std::int64_t accum) {
  std::vector<std::int64_t> sequence;
  for (std::int64_t k = 0; k < accum; ++k) {
    for (std::int64_t l = 0; l < layers; ++l) sequence.push_back(l);
    for (std::int64_t l = layers; l-- > 0;) sequence.push_back(l);
  }
  return sequence;
}

std::vector<std::int64_t> BlockStream::forward_sequence(std::int64_t layers, std::int64_t passes) {
  std::vector<std::int64_t> sequence;
  for (std::int64_t p = 0; p < passes; ++p) {
    for (std::int64_t l = 0; l < layers; ++l) sequence.push_back(l);
  }
  return sequence;
}

std::vector<std::int64_t> BlockStream::training_piece_sequence(
    std::int64_t layers, std::int64_t accum, const std::vector<PieceFlags>& recompute, int pieces) {
  ST_ASSERT(static_cast<std::int64_t>(recompute.size()) == layers, "a recompute per block");
  std::vector<std::int64_t> sequence;
  for (std::int64_t k = 0; k < accum; ++k) {
    for (std::int64_t l = 0; l < layers; ++l) {
      for (int p = 0; p < pieces; ++p) sequence.push_back(piece_access(l, p));
    }
    for (std::int64_t l = layers; l-- > 0;) {
      // What the recompute reads (gpt_model.h: block_backward_pieces), then each piece's
      // backward.
      for (int p = 0; p < pieces; ++p) {
        if (recompute[static_cast<std::size_t>(l)][static_cast<std::size_t>(p)])
          sequence.push_back(piece_access(l, p));
      }
      for (int p = pieces; p-- > 0;) sequence.push_back(piece_access(l, p));
    }
  }
  return sequence;
}

std::vector<std::int64_t> BlockStream::forward_piece_sequence(std::int64_t layers,
                                                              std::int64_t passes, int pieces) {
  std::vector<std::int64_t> sequence;
  for (std::int64_t i = 0; i < passes * layers; ++i) {
    for (int p = 0; p < pieces; ++p) sequence.push_back(piece_access(i % layers, p));
  }
  return sequence;
}

void BlockStream::start(std::vector<std::int64_t> sequence) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    ST_ASSERT(released_ == sequence_.size(), "a block stream pass started before the last ended");
    sequence_ = std::move(sequence);
    loaded_ = acquired_ = released_ = 0;
  }
  cv_.notify_all();
}

const BlockWeights& BlockStream::acquire(std::int64_t block) {
  std::unique_lock<std::mutex> lock(mutex_);
  ST_ASSERT(acquired_ < sequence_.size() && sequence_[acquired_] == block,
            "block " + std::to_string(block) + " acquired out of the stream's order");
  ST_ASSERT(released_ == acquired_, "a block acquired before the previous one was released");
  if (loaded_ <= acquired_ && !error_) {
    common::Timer wait;
    cv_.wait(lock, [&] { return error_ || loaded_ > acquired_; });
    wait_seconds_ += wait.seconds();
  }
  if (error_) std::rethrow_exception(error_);
  const auto slot = static_cast<std::int64_t>(acquired_++ % slot_count_);
  lock.unlock();
  // Outside the lock, like end_use in release (a backend may take locks of its own or call CUDA):
  // the fill is complete (loaded_ was seen past this access under the mutex) and the loader does
  // not refill the slot before this access is released.
  return slots_->use(slot);
}

void BlockStream::release() {
  std::size_t access = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ST_ASSERT(released_ < acquired_, "release without acquire");
    access = released_;
  }
  // Before the count moves: the loader refills the slot only after seeing it, so it sees what
  // end_use recorded (the mutex orders the two).
  slots_->end_use(static_cast<std::int64_t>(access % slot_count_));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++released_;
  }
  cv_.notify_all();
}

double BlockStream::wait_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return wait_seconds_;
}

std::uint64_t BlockStream::loaded_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return loaded_bytes_;
}

std::uint64_t BlockStream::loads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return loads_;
}

void BlockStream::loop() {
  for (;;) {
    std::int64_t block = 0;
    std::size_t access = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // The next access's slot is free once the access K before it is released.
      cv_.wait(lock, [&] {
        return stop_ ||
               (!error_ && loaded_ < sequence_.size() && loaded_ < released_ + slot_count_);
      });
      if (stop_) return;
      access = loaded_;
      block = sequence_[access];
    }
    try {
      const std::uint64_t bytes =
          slots_->fill(static_cast<std::int64_t>(access % slot_count_), block);
      std::lock_guard<std::mutex> lock(mutex_);
      ++loaded_;
      ++loads_;
      loaded_bytes_ += bytes;
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

}  // namespace sparsetrain::fuyou
