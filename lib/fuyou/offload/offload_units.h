// The offloaded trainer's optimizer units and the store's layout of a training run, shared by the
// trainer, its placements and its optimizer thread (internal: not included outside offload/).
//  - Units (offload_plan.h numbers them): 0 = embeddings (wte, wpe), 1 + l = block l, L + 1 =
//    the final norm (and Llama's untied head); processed L + 1, blocks L-1 … 0, embeddings, the
//    order the backward finishes them.
//  - Store tensors: "states.<unit>" (f32, the unit's state pieces, state_pieces.h), "train.state"
//    (i64 [kMetaLen]), "inputs.<l>" (block inputs, plan inputs_in_store), "grads.<l>" (block
//    gradient accumulators, plan block_grads_in_store: pieces 4·P bytes apart), "step_grads.<u>"
//    (plan store_slots == 1: the embeddings' and ln_f's gradients of the step being applied, the
//    unit's flat floats). The last three are the store's scratch tensors (tensor_store.h: one slot
//    per extent, in place): rewritten before they are read; only the one-slot store reads its
//    gradients back on resume (step_journal.h: a step sealed but not committed rolls forward).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"
#include "fuyou/model/model_config.h"
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
  kMetaStoreSlots,   // 2: copy-on-write states; 1: in place (state_placement.h: StatesInPlace)
  kMetaLen
};
// 3: kMetaStoreSlots added (format 2, one field shorter, is read as two slots); 2: states laid
// out in pieces, kMetaPieceFloats added.
inline constexpr std::int64_t kMetaFormatVersion = 3;

inline std::string unit_store_name(std::int64_t unit) { return "states." + std::to_string(unit); }
inline std::string input_store_name(std::int64_t layer) {
  return "inputs." + std::to_string(layer);
}
// Block `layer`'s kept activations of `floats` fp32 floats (kept_activations.h): named by their
// size, so a resumed run whose policy keeps another set defines its own.
inline std::string activation_store_name(std::int64_t layer, std::int64_t floats) {
  return "activations." + std::to_string(layer) + "." + std::to_string(floats);
}
inline std::string grad_store_name(std::int64_t layer) { return "grads." + std::to_string(layer); }
inline std::string step_grad_store_name(std::int64_t unit) {
  return "step_grads." + std::to_string(unit);
}

// The optimizer unit of a canonical tensor name (model_weights.h: either family's).
inline std::int64_t unit_of(const ModelConfig& config, const std::string& name) {
  if (name.rfind("h.", 0) == 0) return 1 + std::stoll(name.substr(2));
  if (name.rfind("model.layers.", 0) == 0) return 1 + std::stoll(name.substr(13));
  if (name.rfind("ln_f.", 0) == 0 || name == "model.norm.weight" || name == "lm_head.weight")
    return config.n_layer + 1;
  return 0;
}

// Is `unit` a block (1 … L)?
inline bool is_block_unit(const ModelConfig& config, std::int64_t unit) {
  return unit >= 1 && unit <= config.n_layer;
}

// The units outside the blocks (the embeddings and ln_f): their gradients stay in the compute tier.
inline std::array<std::int64_t, 2> outside_units(const ModelConfig& config) {
  return {0, config.n_layer + 1};
}

// bf16 compute weights: 2 bytes a value (the CUDA tier's pinned weight slots, its uploads).
inline constexpr std::uint64_t kBf16Bytes = 2;

// n floats at `base` as a 1-D fp32 / bf16 tensor (no copy).
inline at::Tensor float_span(float* base, std::int64_t n) {
  return at::from_blob(base, {n}, at::TensorOptions().dtype(at::kFloat));
}
// Read-only use of a const buffer (from_blob takes void*; nothing writes through it).
inline at::Tensor float_span(const float* base, std::int64_t n) {
  return float_span(const_cast<float*>(base), n);
}
inline at::Tensor bf16_span(std::byte* base, std::int64_t n) {
  return at::from_blob(base, {n}, at::TensorOptions().dtype(at::kBFloat16));
}

// A tensor's flat floats [offset, offset + n) as a 1-D view (contiguous tensors only: the view
// must alias the tensor's memory).
inline at::Tensor flat_slice(const at::Tensor& t, std::int64_t offset, std::int64_t n) {
  ST_ASSERT(t.is_contiguous(), "state piece of a non-contiguous tensor");
  return t.view({-1}).narrow(0, offset, n);
}

// One optimizer unit: its tensors in named() order.
struct UnitTensors {
  std::vector<std::string> names;
  std::vector<at::Tensor*> compute;  // the compute weights the optimizer publishes into
  std::vector<std::int64_t> numels;  // of each tensor
  std::int64_t padded = 0;           // floats of the unit's states, each of master, m, v
  std::vector<StatePiece> pieces;    // how the store (and RAM) lay them out
  // The optimizer writes its new compute weights; false for streamed blocks, whose next load
  // converts the master instead.
  bool published = true;
};

// One state piece of a step, in the optimizer's processing order.
struct UnitPiece {
  std::int64_t unit = 0;
  StatePiece piece;
};

}  // namespace sparsetrain::fuyou
