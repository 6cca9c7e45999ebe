// Host <-> GPU copies for the offloaded trainer's CUDA tier, on a copy stream of their own, ordered
// against the compute thread's stream by CUDA events (no CUDA types in this header: callers outside
// CUDA builds still compile). The compute thread only records marks (cudaEventRecord: no wait);
// the optimizer thread, which owns a CudaTransfer, waits on them, downloads gradients into pinned
// host memory and uploads the new compute weights.
// Also the CUDA tier's block slots for BlockStream (block_stream.h), when the blocks' compute
// weights do not fit the GPU budget: see make_cuda_block_slots.
// Without CUDA (build or device), constructing a CudaTransfer or CUDA block slots throws
// EnvironmentError and mark_compute_stream returns an empty mark.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "fuyou/model/model_config.h"
#include "fuyou/offload/block_stream.h"
#include "fuyou/offload/state_pieces.h"

namespace sparsetrain::fuyou {

struct CudaMarkImpl;
// A point in a stream's work: complete once everything enqueued before it has run.
using CudaMark = std::shared_ptr<CudaMarkImpl>;

// Compute thread: a mark after everything enqueued so far on the current CUDA stream.
CudaMark mark_compute_stream();

// The caching allocator's peak of allocated bytes on the current device since the last reset
// (compute_meter.h); 0 without CUDA.
void reset_cuda_peak_allocated();
std::uint64_t cuda_peak_allocated_bytes();

class CudaTransfer {
 public:
  CudaTransfer();  // a stream from the pool of the current device
  ~CudaTransfer();
  CudaTransfer(const CudaTransfer&) = delete;
  CudaTransfer& operator=(const CudaTransfer&) = delete;

  // dst[i] (host, pinned, same numel and dtype) <- src[i] (GPU), once `after` is reached; returns
  // when the copies are done (blocks the calling thread, never the compute stream).
  void download(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst,
                const CudaMark& after);
  // dst[i] (GPU) <- src[i] (host, pinned) enqueued on the copy stream; returns a mark for their
  // completion (src must stay untouched until then).
  CudaMark upload(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst);
  // Blocks the calling thread until `mark` is reached (no-op for an empty mark).
  static void wait(const CudaMark& mark);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// fp32 -> bf16 bits, round to nearest even in integer arithmetic (subnormals kept, NaN -> 0x7FC0),
// threaded: the CUDA block slots' conversion, the same as c10::BFloat16 and the CPU AdamW's bf16
// output. Needs no CUDA.
void fp32_to_bf16_rne(const float* src, std::uint16_t* dst, std::int64_t n);

// Loader thread: the fp32 weights of block `block`'s state piece `piece` (state_pieces.h: the
// block's flat floats [piece.first, piece.first + piece.floats), BlockTensor order, each tensor
// after the previous): a pointer into the states in RAM, or `scratch` (one piece of floats, or
// null when the slots were made without one) after reading them into it. Blocking; may throw.
using BlockMasterFn =
    std::function<const float*(std::int64_t block, const StatePiece& piece, float* scratch)>;

// The CUDA tier's slots for a BlockStream: `slots` >= 2 bf16 GPU slots of one block each
// (allocated once, one allocation per tensor as resident weights have), two pinned bf16 host
// buffers of one state piece of `piece_floats` (registered once) and, with `scratch`, one fp32
// host buffer of one piece for store reads. fill (loader thread) goes piece by piece: waits on the
// host for the previous upload out of the pinned buffer it takes, converts the piece's fp32 master
// to bf16 on the CPU (round to nearest even in integer arithmetic: exactly the CPU AdamW's bf16
// output, which is what the resident tier uploads), and uploads it on a copy stream of its own
// (so one piece converts while the previous one crosses PCIe), recording an event after each piece
// (the last one's marks the block); the first upload waits, on the GPU, for the event the compute
// stream recorded at the slot's last release (so the conversion overlaps the GPU's work on the
// slot's previous block). use (compute thread) makes the compute stream wait for that event;
// end_use records one on it. So the compute thread never waits on the host for a copy, and the GPU
// holds `slots` blocks at a time. uploaded_bytes(): bf16 bytes sent up so far (what fill returns
// is the fp32 bytes read).
std::unique_ptr<BlockStream::Slots> make_cuda_block_slots(const ModelConfig& config,
                                                          std::int64_t slots,
                                                          std::int64_t piece_floats, bool scratch,
                                                          BlockMasterFn master);
// Streaming in pieces (offload_plan.h: pieces_per_block): `slots` >= 2 bf16 GPU slots of the
// largest block piece each (one allocation per slot, the pieces' tensors views of it), filled as
// make_cuda_block_slots' are, in chunks of at most `chunk_floats` (a state piece) through one fp32
// scratch buffer (`read` copies a range of the block's master into it: from RAM or the store) and
// two pinned bf16 buffers; use() gives the piece in the slot (its tensors only).
std::unique_ptr<BlockStream::Slots> make_cuda_piece_slots(const ModelConfig& config,
                                                          std::int64_t slots,
                                                          std::int64_t chunk_floats,
                                                          BlockStream::RangeReadFn read);
// bf16 bytes either kind of CUDA slots sent up so far (0 for host slots).
std::uint64_t cuda_block_slots_uploaded_bytes(const BlockStream::Slots& slots);

// The CUDA tier's block inputs (activation checkpoints) in pinned CPU memory, when the GPU budget
// does not hold them beside the streamed blocks (offload_plan.h: inputs_in_cpu): the analogue of
// input_stash.h's store round trip, without a thread. push (forward order) enqueues, on a copy
// stream of its own, the input's copy into its pinned host buffer after an event on the compute
// stream, and marks the GPU tensor used by that stream (the caching allocator then does not
// recycle its memory before the copy is done); pop (reverse order) makes the copy stream wait for
// an event on the compute stream (every earlier use of the GPU slots is enqueued before it),
// uploads the next input the backward will need into one of two GPU slots, and makes the compute
// stream wait for the input it returns. The compute thread only enqueues work and events: it
// never waits on the host. bf16 round-trips exactly, so the backward sees the very tensors it
// would have kept. Per micro-batch: push(0) … push(L-1), pop(L-1) … pop(0), end_pass().
class CudaInputStash {
 public:
  // `shape`: one input, [B, T, C] bf16. Allocates `layers` pinned host buffers (registered once)
  // and two GPU slots.
  CudaInputStash(std::int64_t layers, std::vector<std::int64_t> shape);
  ~CudaInputStash();
  CudaInputStash(const CudaInputStash&) = delete;
  CudaInputStash& operator=(const CudaInputStash&) = delete;

  void push(std::int64_t layer, const at::Tensor& input);
  // A tensor over a GPU slot, for work enqueued before the next pop (which refills the slot).
  at::Tensor pop(std::int64_t layer);
  void end_pass();
  std::uint64_t bytes_down() const;  // device -> pinned host, in all
  std::uint64_t bytes_up() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The CUDA tier's kept activations away from the GPU (kept_activations.h, plan tiers cpu and
// store), a block's several tensors of mixed dtypes (bf16 activations, fp32 LayerNorm statistics)
// laid out one after the other, 256-byte aligned:
//  - in pinned CPU memory, a buffer per block: as CudaInputStash does for block inputs, push
//    (forward order) copies them down on a copy stream after an event on the compute stream;
//  - in the store (ActivationStoreIo): push copies the block down the same way into the next of a
//    few pinned staging buffers, and the stash's I/O thread, once that copy's event is reached,
//    writes the buffer to the store. In the backward the thread reads the blocks back in reverse
//    order into the buffers as they free (a buffer frees when the upload out of it, an event the
//    thread waits for, is done).
// pop (reverse order) uploads the block into one of two GPU slots (unless a prefetch did),
// prefetches the next block the backward needs into the other (a store block only once its read
// is in), and makes the compute stream wait for the one it returns: views of the slot, valid for
// work enqueued before the next pop (the caller enqueues a block's whole backward before the next
// pop, whose prefetch refills that slot). The compute thread never waits on the host for a copy;
// it waits for the I/O thread only where the store falls behind: in push while every staging
// buffer still waits to be written, in pop for a read not in yet (wait_seconds()).
struct ActivationStoreIo {
  std::vector<bool> in_store;  // per block: kept in the store (else in pinned memory, or not here)
  std::int64_t slots = 2;      // staging buffers, of the largest store block each (>= 2)
  // Blocking, on the I/O thread: block `block`'s `bytes` bytes to and from its store tensor.
  std::function<void(std::int64_t block, const void* src, std::uint64_t bytes)> write;
  std::function<void(std::int64_t block, void* dst, std::uint64_t bytes)> read;
};

class CudaActivationStash {
 public:
  // bytes[l]: an upper bound of block l's kept bytes (0: block l is not kept here); `store`: which
  // of them go to the store (none: every one in pinned memory).
  explicit CudaActivationStash(std::vector<std::uint64_t> bytes, ActivationStoreIo store = {});
  ~CudaActivationStash();
  CudaActivationStash(const CudaActivationStash&) = delete;
  CudaActivationStash& operator=(const CudaActivationStash&) = delete;

  // Each rethrows the I/O thread's error (a failed store write or read).
  void push(std::int64_t block, const std::vector<at::Tensor>& tensors);
  // The tensors push(block) had, same shapes and dtypes, over a GPU slot.
  std::vector<at::Tensor> pop(std::int64_t block);
  void end_pass();
  std::uint64_t bytes_down() const;  // device -> pinned host (either tier), in all
  std::uint64_t bytes_up() const;
  std::uint64_t bytes_written() const;  // to the store, in all
  std::uint64_t bytes_read() const;
  double wait_seconds() const;  // the compute thread's waits for the I/O thread

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparsetrain::fuyou
