// BlockStream (see block_stream.h).
#include "fuyou/block_stream.h"

#include <ATen/ops/from_blob.h>

#include "common/error.h"
#include "common/timer.h"
#include "fuyou/offload_plan.h"

namespace sparsetrain::fuyou {

BlockStream::BlockStream(const ModelConfig& config, std::int64_t slots, ReadFn read)
    : slot_floats_(unit_padded_params(config, 1)), read_(std::move(read)) {
  ST_ASSERT(slots >= 2, "a block stream needs at least two slots");
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  for (std::int64_t s = 0; s < slots; ++s) {
    slots_.emplace_back(4 * static_cast<std::size_t>(slot_floats_), /*pin=*/false);
    auto* base = reinterpret_cast<float*>(slots_.back().data());
    BlockWeights view;
    std::int64_t offset = 0;
    for (int i = 0; i < kBlockTensorCount; ++i) {
      view[i] = at::from_blob(base + offset, block_tensor_shape(config, i), f32);
      offset += view[i].numel();
    }
    views_.push_back(std::move(view));
  }
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
  return views_[acquired_++ % views_.size()];
}

void BlockStream::release() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ST_ASSERT(released_ < acquired_, "release without acquire");
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

void BlockStream::loop() {
  for (;;) {
    std::int64_t block = 0;
    std::size_t access = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // The next access's slot is free once the access K before it is released.
      cv_.wait(lock, [&] {
        return stop_ || (!error_ && loaded_ < sequence_.size() &&
                         loaded_ < released_ + slots_.size());
      });
      if (stop_) return;
      access = loaded_;
      block = sequence_[access];
    }
    try {
      read_(block, reinterpret_cast<float*>(slots_[access % slots_.size()].data()));
      std::lock_guard<std::mutex> lock(mutex_);
      ++loaded_;
      loaded_bytes_ += 4 * static_cast<std::uint64_t>(slot_floats_);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

}  // namespace sparsetrain::fuyou
