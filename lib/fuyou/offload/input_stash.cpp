// InputStash (see input_stash.h).
#include "fuyou/offload/input_stash.h"

#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "common/timer.h"

namespace sparsetrain::fuyou {

InputStash::InputStash(std::vector<std::int64_t> floats, std::int64_t slots, WriteFn write,
                       ReadFn read)
    : layers_(static_cast<std::int64_t>(floats.size())),
      floats_(std::move(floats)),
      write_(std::move(write)),
      read_(std::move(read)),
      state_(2 * floats_.size(), 0) {
  ST_ASSERT(slots >= 2 && layers_ >= 1, "an input stash needs two slots and a layer");
  const std::int64_t largest = *std::max_element(floats_.begin(), floats_.end());
  for (std::int64_t s = 0; s < slots; ++s) {
    slots_.emplace_back(4 * static_cast<std::size_t>(largest), /*pin=*/false);
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

std::int64_t InputStash::layer_of(std::size_t op) const {
  return op < state_.size() / 2 ? static_cast<std::int64_t>(op)
                                : static_cast<std::int64_t>(state_.size() - 1 - op);
}

at::Tensor InputStash::view(std::size_t op) {
  return at::from_blob(slots_[op % slots_.size()].data(),
                       {floats_[static_cast<std::size_t>(layer_of(op))]},
                       at::TensorOptions().dtype(at::kFloat));
}

void InputStash::push(std::int64_t layer, const std::vector<at::Tensor>& tensors) {
  const auto op = static_cast<std::size_t>(layer);
  TORCH_CHECK(layer >= 0 && layer < layers_, "InputStash::push: no layer ", layer);
  std::int64_t end = 0;  // where the last tensor ends, each starting kAlignFloats-aligned
  for (const at::Tensor& t : tensors) {
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu(), "InputStash::push: layer ",
                layer, " tensors must be fp32 CPU");
    end = aligned(end) + t.numel();
  }
  TORCH_CHECK(end <= floats_[op] && (tensors.size() != 1 || end == floats_[op]),
              "InputStash::push: layer ", layer, " has ", end, " floats, not ", floats_[op]);
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
  const at::Tensor slot = view(op);
  std::int64_t at = 0;
  for (const at::Tensor& t : tensors) {
    at = aligned(at);
    slot.slice(0, at, at + t.numel()).view(t.sizes()).copy_(t);
    at += t.numel();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    state_[op] = 1;
  }
  cv_.notify_all();
}

at::Tensor InputStash::pop(std::int64_t layer) {
  TORCH_CHECK(layer >= 0 && layer < layers_, "InputStash::pop: no layer ", layer);
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
      const auto bytes =
          4 * static_cast<std::uint64_t>(floats_[static_cast<std::size_t>(layer_of(op))]);
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
