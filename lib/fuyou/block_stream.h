// Streams the blocks' compute weights through a few slots of the compute tier when they do not all
// fit (the offloaded trainer's CPU tier; offload_plan.h: stream_slots). A loader thread walks the
// blocks in the order a pass will use them — per micro-batch the forward 0 … L-1 and the backward
// L-1 … 0 (its recompute), or the forward alone for validation — waits until the slot an access
// uses is free, and fills it with the block's fp32 weights through `read` (a store read of the
// block's master segment, or a copy from the states in RAM). The compute thread acquires blocks in
// that order and releases each when done with it. Slots go round-robin, so with K slots the loader
// runs up to K - 1 blocks ahead. On the CPU tier the compute weights are the fp32 master weights,
// so a streamed block is bit for bit the block a resident run would use.
// Threads: `read` runs on the loader thread only (the compute thread never does I/O). Not a cache:
// a block used twice in a row is loaded twice.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/io/aligned_buffer.h"
#include "fuyou/gpt_weights.h"
#include "fuyou/model_config.h"

namespace sparsetrain::fuyou {

class BlockStream {
 public:
  // Fills dst (floats of one block, in BlockTensor order, each tensor after the previous) with
  // block `block`'s weights; blocking; may throw (the error reaches the compute thread).
  using ReadFn = std::function<void(std::int64_t block, float* dst)>;

  // `slots` >= 2 slots of one block each.
  BlockStream(const ModelConfig& config, std::int64_t slots, ReadFn read);
  ~BlockStream();
  BlockStream(const BlockStream&) = delete;
  BlockStream& operator=(const BlockStream&) = delete;

  // The sequence of one optimizer step: K micro-batches of forward then backward.
  static std::vector<std::int64_t> training_sequence(std::int64_t layers, std::int64_t accum);
  // `passes` forwards (validation batches).
  static std::vector<std::int64_t> forward_sequence(std::int64_t layers, std::int64_t passes);

  // Starts a pass; the previous one must be over (every access acquired and released).
  void start(std::vector<std::int64_t> sequence);
  // Compute thread: the next block of the sequence, which must be `block`; waits until it is loaded.
  // Rethrows a loader error.
  const BlockWeights& acquire(std::int64_t block);
  // Compute thread: done with the block acquired last (its slot may be refilled).
  void release();

  double wait_seconds() const;  // the compute thread's waits in acquire, in all
  std::uint64_t loaded_bytes() const;

 private:
  void loop();

  std::int64_t slot_floats_ = 0;
  std::vector<common::io::AlignedBuffer> slots_;
  std::vector<BlockWeights> views_;  // per slot: fp32 tensors over the slot's memory
  ReadFn read_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::int64_t> sequence_;
  std::size_t loaded_ = 0;    // accesses whose slot is filled
  std::size_t acquired_ = 0;  // accesses handed to the compute thread
  std::size_t released_ = 0;  // accesses the compute thread is done with
  bool stop_ = false;
  std::exception_ptr error_;
  double wait_seconds_ = 0;
  std::uint64_t loaded_bytes_ = 0;
  std::thread thread_;  // last: starts after every member above exists
};

}  // namespace sparsetrain::fuyou
