// The offloaded trainer's internals (offload_trainer.h), shared by offload_trainer.cpp and
// optimizer_stage.cpp, its only includers: the store's tensor names and train.state layout, the
// optimizer unit table, tensor views of raw buffers, and OffloadTrainer::Impl (the buffers and the
// state the compute, optimizer and loader threads share). Not an API.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "fuyou/offload/block_stream.h"
#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/model/gpt_weights.h"
#include "fuyou/offload/input_stash.h"
#include "fuyou/offload/offload_trainer.h"
#include "fuyou/offload/state_pieces.h"

namespace sparsetrain::fuyou {

inline constexpr const char* kMetaName = "train.state";
// train.state, int64 [kMetaLen]: what a resumed run must agree with, and the step (data position).
enum MetaField : int {
  kMetaFormat,
  kMetaStep,
  kMetaSeed,
  kMetaBatch,
  kMetaSeq,
  kMetaAccum,
  kMetaLayers,
  kMetaHidden,
  kMetaPieceFloats,  // the states' layout (state_pieces.h)
  kMetaLen
};
// 2: states laid out in pieces, kMetaPieceFloats added.
inline constexpr std::int64_t kMetaFormatVersion = 2;

inline std::string unit_store_name(std::int64_t unit) { return "states." + std::to_string(unit); }
inline std::string input_store_name(std::int64_t layer) { return "inputs." + std::to_string(layer); }
// Block `layer`'s fp32 gradient accumulator (plan block_grads_in_store): its pieces as the states'
// (state_pieces.h), piece p at byte 4·P·p. Scratch: rewritten every step, never read on resume.
inline std::string grad_store_name(std::int64_t layer) { return "grads." + std::to_string(layer); }

inline at::Tensor float_span(float* base, std::int64_t n) {
  return at::from_blob(base, {n}, at::TensorOptions().dtype(at::kFloat));
}

inline at::Tensor bf16_span(std::byte* base, std::int64_t n) {
  return at::from_blob(base, {n}, at::TensorOptions().dtype(at::kBFloat16));
}

// One optimizer unit (embeddings, a block, ln_f): its tensors in named() order.
struct UnitTensors {
  std::vector<std::string> names;
  std::vector<at::Tensor*> compute;  // the compute weights the optimizer publishes into
  std::vector<std::int64_t> numels;  // of each tensor
  std::int64_t padded = 0;           // floats of the unit's states, each of master, m, v
  std::vector<StatePiece> pieces;    // how the store (and RAM) lay them out
};

// A tensor's flat floats [offset, offset + n) as a 1-D view (contiguous tensors only: the view
// must alias the tensor's memory).
inline at::Tensor flat_slice(const at::Tensor& t, std::int64_t offset, std::int64_t n) {
  ST_ASSERT(t.is_contiguous(), "state piece of a non-contiguous tensor");
  return t.view({-1}).narrow(0, offset, n);
}

struct OffloadTrainer::Impl {
  bool cuda = false;                      // compute tier on the GPU (bf16), else CPU (fp32)
  // Blocks streamed through a few slots (plan_.stream_slots > 0): compute_.blocks then holds
  // shape-only (meta) tensors and the weights come from `stream`.
  bool streaming = false;
  std::unique_ptr<BlockStream> stream;
  std::unique_ptr<InputStash> stash;  // block inputs through the store (plan_.inputs_in_store)
  std::unique_ptr<CudaInputStash> gpu_stash;  // CUDA: in pinned CPU memory (plan_.inputs_in_cpu)
  std::vector<UnitTensors> units;         // by unit id
  std::vector<std::int64_t> order;        // processing order: ln_f, blocks L-1 … 0, embeddings
  std::int64_t piece_floats = 0;          // P, state_pieces.h
  // states_in_cpu: per unit, its pieces' [master | m | v] (the store's layout).
  std::vector<common::io::AlignedBuffer> cpu_states;
  common::io::AlignedBuffer staging[2];  // otherwise: two slots of one piece
  // CUDA: pinned host slots of one state piece, alternating by piece: fp32 gradients coming down,
  // bf16 weights going up. grad_slots also carry the pieces of block gradients in the store (both
  // tiers; plain memory of one block piece on the CPU tier).
  common::io::AlignedBuffer grad_slots[2], weight_pinned[2];
  common::io::AlignedBuffer meta;  // train.state
  // Gradient accumulators, fp32, compute tier.
  at::Tensor wte_grad, wpe_grad, lnf_w_grad, lnf_b_grad;
  std::vector<BlockWeights> block_grads;  // n_layer (full) or 2 (pool)
  bool pool = false;                      // block_grads is a pool of 2 shared by turns
  // Streaming with K > 1 or clipping (plan_.block_grads_in_cpu: CUDA, or the CPU tier when its
  // compute budget cannot hold a buffer per block): each block's gradients leave the compute tier
  // through the pool after every micro-batch's backward of that block and add up here,
  // fp32 CPU, one accumulator per block (the optimizer thread's drain). block_norm_terms[l]: its
  // squared-norm terms, computed by the optimizer thread after the last drain (K > 1).
  bool host_grads = false;
  std::vector<BlockWeights> host_block_grads;  // empty when grads_in_store
  // plan_.block_grads_in_store: the accumulators are the store's grad_store_name tensors instead,
  // and grad_read holds one stored piece while the drain adds it to the incoming one.
  bool grads_in_store = false;
  common::io::AlignedBuffer grad_read;
  std::vector<std::vector<at::Tensor>> block_norm_terms;
  std::atomic<bool> in_backward{false};   // compute thread inside a step's backward passes
};

}  // namespace sparsetrain::fuyou
