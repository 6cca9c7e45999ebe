// Streams the blocks' compute weights through a few slots of the compute tier when they do not all
// fit (offload_plan.h: stream_slots). A loader thread walks the blocks (or, streaming in pieces,
// the blocks' pieces: piece_access ids) in the order a pass will use them — per micro-batch the
// forward 0 … L-1 and the backward L-1 … 0 (its recompute), or the forward alone for validation —
// waits until the slot an access uses is free, and fills it. The
// compute thread acquires blocks in that order and releases each when done with it. Slots go
// round-robin, so with K slots the loader runs up to K - 1 blocks ahead.
// Where the slots live is a `Slots` backend; this class is only the sequencing, the same on both
// tiers (and tested on the CPU with a recording backend):
//  - host slots (the CPU tier, host_slots below): fp32 memory filled through `read` (a store read
//    of the block's master segment, or a copy from the states in RAM). The CPU tier's compute
//    weights are the fp32 master weights, so a streamed block is bit for bit the block a resident
//    run would use; "released" means the compute thread is done with it.
//  - CUDA slots (cuda_transfer.h: make_cuda_block_slots): bf16 GPU memory. There "released" means
//    only that the compute thread has ENQUEUED its last use: the backend records a CUDA event then,
//    and the upload in its fill (on the loader thread) waits for that event, on the GPU, before
//    overwriting the slot;
//    acquire makes the compute stream wait for the slot's upload (a stream wait, no host wait).
// Threads: fill runs on the loader thread only (the compute thread never does I/O); use / end_use
// on the compute thread. Not a cache: a block used twice in a row is loaded twice.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"

namespace sparsetrain::fuyou {

class BlockStream {
 public:
  // Fills dst (floats of one block, in BlockTensor order, each tensor after the previous) with
  // block `block`'s fp32 weights; blocking; may throw (the error reaches the compute thread).
  using ReadFn = std::function<void(std::int64_t block, float* dst)>;

  // Where the slots live and how a block gets into one.
  class Slots {
   public:
    virtual ~Slots() = default;
    virtual std::int64_t count() const = 0;
    // Loader thread: fills slot `slot` with block `block` (blocking; may throw). Called only after
    // the access that used the slot before has been released (end_use returned). Returns the bytes
    // it read from the block's source (store or RAM).
    virtual std::uint64_t fill(std::int64_t slot, std::int64_t block) = 0;
    // Compute thread, in acquire, once the slot is filled: its weights, usable from the compute
    // thread (CUDA: after making the compute stream wait for the upload).
    virtual const BlockWeights& use(std::int64_t slot) = 0;
    // Compute thread, in release: every use of the slot has been issued.
    virtual void end_use(std::int64_t slot) { (void)slot; }
  };

  // CPU tier: `slots` >= 2 fp32 host slots of one block each (padded as in the store), filled by
  // `read`.
  static std::unique_ptr<Slots> host_slots(const ModelConfig& config, std::int64_t slots,
                                           ReadFn read);

  // Streaming in pieces (offload_plan.h: pieces_per_block): an access is one piece of one block,
  // id piece_access(l, p); a slot holds the largest piece. Fills dst with block `block`'s flat fp32
  // weights [first, first + floats) (one piece); blocking; may throw.
  using RangeReadFn =
      std::function<void(std::int64_t block, std::int64_t first, std::int64_t floats, float* dst)>;
  // (the stride is the most pieces of either family, so an id alone names block and piece)
  static std::int64_t piece_access(std::int64_t block, int piece) {
    return block * kMaxBlockPieces + piece;
  }
  static std::int64_t access_block(std::int64_t access) { return access / kMaxBlockPieces; }
  static int access_piece(std::int64_t access) {
    return static_cast<int>(access % kMaxBlockPieces);
  }
  // CPU tier in pieces: `slots` >= 2 fp32 host slots of the largest piece each; use() gives the
  // weights of the piece in the slot (its tensors only, the others undefined).
  static std::unique_ptr<Slots> host_piece_slots(const ModelConfig& config, std::int64_t slots,
                                                 RangeReadFn read);

  BlockStream(const ModelConfig& config, std::int64_t slots, ReadFn read)
      : BlockStream(host_slots(config, slots, std::move(read))) {}
  explicit BlockStream(std::unique_ptr<Slots> slots);  // count() >= 2
  ~BlockStream();
  BlockStream(const BlockStream&) = delete;
  BlockStream& operator=(const BlockStream&) = delete;

  // The sequence of one optimizer step: K micro-batches of forward then backward.
  static std::vector<std::int64_t> training_sequence(std::int64_t layers, std::int64_t accum);
  // `passes` forwards (validation batches).
  static std::vector<std::int64_t> forward_sequence(std::int64_t layers, std::int64_t passes);
  // The same in `pieces` pieces a block: a forward uses pieces 0 … pieces-1 of each block; block
  // l's backward uses the pieces its recompute reads (recompute[l], block_activations.h:
  // recompute_pieces; GPT-2 0 … 2 with nothing kept), then pieces-1 … 0 (each piece's backward).
  static std::vector<std::int64_t> training_piece_sequence(std::int64_t layers, std::int64_t accum,
                                                           const std::vector<PieceFlags>& recompute,
                                                           int pieces);
  static std::vector<std::int64_t> forward_piece_sequence(std::int64_t layers, std::int64_t passes,
                                                          int pieces);

  // Starts a pass; the previous one must be over (every access acquired and released).
  void start(std::vector<std::int64_t> sequence);
  // Compute thread: the next block of the sequence, which must be `block`; waits until it is
  // loaded. Rethrows a loader error.
  const BlockWeights& acquire(std::int64_t block);
  // Compute thread: done with the block acquired last (its slot may be refilled).
  void release();

  double wait_seconds() const;         // the compute thread's waits in acquire, in all
  std::uint64_t loaded_bytes() const;  // what fill reported, in all
  std::uint64_t loads() const;         // fills, in all

  Slots& slots() { return *slots_; }

 private:
  void loop();

  std::unique_ptr<Slots> slots_;
  std::size_t slot_count_ = 0;

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
  std::uint64_t loads_ = 0;
  std::thread thread_;  // last: starts after every member above exists
};

}  // namespace sparsetrain::fuyou
