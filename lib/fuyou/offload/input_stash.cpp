// InputStash (see input_stash.h).
#include "fuyou/offload/input_stash.h"

#include <ATen/ops/from_blob.h>

#include <cstring>

#include "common/error.h"
#include "common/timer.h"

namespace sparsetrain::fuyou {

InputStash::InputStash(std::int64_t layers, std::vector<std::int64_t> shape, std::int64_t slots,
                       WriteFn write, ReadFn read)
    : layers_(layers),
      shape_(std::move(shape)),
      write_(std::move(write)),
      read_(std::move(read)),
      state_(static_cast<std::size_t>(2 * layers), 0) {
  ST_ASSERT(slots >= 2 && layers >= 1, "an input stash needs two slots and a layer");
  floats_ = 1;
  for (std::int64_t d : shape_) floats_ *= d;
  for (std::int64_t s = 0; s < slots; ++s) {
    slots_.emplace_back(4 * static_cast<std::size_t>(floats_), /*pin=*/false);
  }
  thread_ = std::thread([this] { loop(); });
}

InputStash::~InputStash() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

at::Tensor InputStash::view(std::size_t op) {
  return at::from_blob(slots_[op % slots_.size()].data(), shape_,
                       at::TensorOptions().dtype(at::kFloat));
}

void InputStash::push(std::int64_t layer, const at::Tensor& input) {
  const auto op = static_cast<std::size_t>(layer);
  TORCH_CHECK(
      input.scalar_type() == at::kFloat && input.device().is_cpu() && input.numel() == floats_,
      "InputStash::push: layer ", layer, " input must be fp32 CPU with ", floats_, " elements");
  {
    std::unique_lock<std::mutex> lock(mutex_);
    ST_ASSERT(op < state_.size() / 2 && state_[op] == 0, "stash push out of order");
    if (!slot_free(op) && !error_) {
      common::Timer wait;
      cv_.wait(lock, [&] { return error_ || slot_free(op); });
      wait_seconds_ += wait.seconds();
    }
    if (error_) std::rethrow_exception(error_);
  }
  // The slot is ours until the worker has written it.
  view(op).copy_(input.reshape(shape_));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    state_[op] = 1;
  }
  cv_.notify_all();
}

at::Tensor InputStash::pop(std::int64_t layer) {
  const std::size_t op = state_.size() - 1 - static_cast<std::size_t>(layer);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    ST_ASSERT(op >= state_.size() / 2 && state_[op] != 2, "stash pop out of order");
    if (op > state_.size() / 2) state_[op - 1] = 2;  // the previous input is done with
    cv_.notify_all();
    if (state_[op] != 1 && !error_) {
      common::Timer wait;
      cv_.wait(lock, [&] { return error_ || state_[op] == 1; });
      wait_seconds_ += wait.seconds();
    }
    if (error_) std::rethrow_exception(error_);
  }
  return view(op);
}

void InputStash::end_pass() {
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    ST_ASSERT(state_.back() == 1 && worker_ == state_.size(), "stash pass ended early");
    std::fill(state_.begin(), state_.end(), 0);
    worker_ = 0;
  }
  cv_.notify_all();
}

std::uint64_t InputStash::bytes_written() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return written_bytes_;
}
std::uint64_t InputStash::bytes_read() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return read_bytes_;
}
double InputStash::wait_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return wait_seconds_;
}

void InputStash::loop() {
  const std::size_t half = state_.size() / 2;
  for (;;) {
    std::size_t op = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] {
        if (stop_) return true;
        if (error_ || worker_ >= state_.size()) return false;
        return worker_ < half ? state_[worker_] == 1 : slot_free(worker_);
      });
      if (stop_) return;
      op = worker_;
    }
    try {
      auto* slot = reinterpret_cast<float*>(slots_[op % slots_.size()].data());
      const auto bytes = 4 * static_cast<std::uint64_t>(floats_);
      if (op < half) {
        write_(static_cast<std::int64_t>(op), slot);
      } else {
        read_(static_cast<std::int64_t>(state_.size() - 1 - op), slot);
      }
      std::lock_guard<std::mutex> lock(mutex_);
      (op < half ? written_bytes_ : read_bytes_) += bytes;
      state_[op] = op < half ? 2 : 1;
      ++worker_;
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      error_ = std::current_exception();
    }
    cv_.notify_all();
  }
}

}  // namespace sparsetrain::fuyou
