// Keeps what a forward saves per block for its backward — the block inputs (offload_plan.h:
// inputs_in_store) or the activations the policy keeps (kept_activations.h) — out of the compute
// tier when it is short (the offloaded trainer's CPU tier): each layer's tensors are copied into
// one of a few slots, one after the other, as the forward produces them and written to the SSD
// store, then read back ahead of the backward, in reverse order, into the same slots. The I/O runs
// on a thread of its own (the compute thread only copies and waits); fp32 round-trips exactly, so
// the backward sees the very tensors it would have kept.
// Per micro-batch: push(0) … push(L-1), then pop(L-1) … pop(0), then end_pass().
#pragma once

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/io/aligned_buffer.h"

namespace sparsetrain::fuyou {

class InputStash {
 public:
  // Blocking transfers of one input's floats to and from wherever layer `layer`'s input is kept.
  using WriteFn = std::function<void(std::int64_t layer, const float* src)>;
  using ReadFn = std::function<void(std::int64_t layer, float* dst)>;

  // floats[l]: what layer l keeps, fp32 floats (L = floats.size() >= 1); a slot holds the
  // largest. slots >= 2.
  InputStash(std::vector<std::int64_t> floats, std::int64_t slots, WriteFn write, ReadFn read);
  ~InputStash();
  InputStash(const InputStash&) = delete;
  InputStash& operator=(const InputStash&) = delete;

  // Compute thread: layer `layer`'s tensors (forward order; fp32 CPU), copied one after the other,
  // each from a multiple of kAlignFloats (block_activations.h: kActivationAlignCpu), ending within
  // floats[layer] (one tensor: exactly); waits only while every slot is busy.
  void push(std::int64_t layer, const std::vector<at::Tensor>& tensors);
  // Compute thread: layer `layer`'s floats back (reverse order): a 1-D tensor over a slot, valid
  // until the next pop or end_pass. Rethrows an I/O error.
  at::Tensor pop(std::int64_t layer);
  // Compute thread: the micro-batch's backward is done with the last input.
  void end_pass();

  std::uint64_t bytes_written() const;
  std::uint64_t bytes_read() const;
  double wait_seconds() const;  // the compute thread's waits in push and pop

 private:
  bool slot_free(std::size_t op) const {
    return op < slots_.size() || state_[op - slots_.size()] == 2;
  }
  at::Tensor view(std::size_t op);
  std::int64_t layer_of(std::size_t op) const;
  static constexpr std::int64_t kAlignFloats = 16;
  static std::int64_t aligned(std::int64_t floats) {
    return (floats + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  }
  void loop();

  std::int64_t layers_;
  std::vector<std::int64_t> floats_;
  std::vector<common::io::AlignedBuffer> slots_;
  WriteFn write_;
  ReadFn read_;

  // Ops of a pass: op l < L writes layer l, op L + j reads layer L-1-j; op i uses slot i % K and
  // may start once op i - K is done. States: 0 pending, 1 filled (write) / loaded (read), 2 done
  // (written, or released by the compute thread).
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<int> state_;
  std::size_t worker_ = 0;  // the worker's next op
  bool stop_ = false;
  std::exception_ptr error_;
  std::uint64_t written_bytes_ = 0, read_bytes_ = 0;
  double wait_seconds_ = 0;
  std::thread thread_;  // last: starts after every member above exists
};

}  // namespace sparsetrain::fuyou
