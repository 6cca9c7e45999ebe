// plan_offload (see offload_plan.h): sizes the compute tier, then the CPU tier, refuses what does
// not fit, sizes the SSD store, counts each iteration's traffic and computes the bound's terms.
// Each tier's items are named fields of a struct until the end, where they become the ordered
// PlanItem lists.
#include "fuyou/offload/offload_plan.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <optional>
#include <sstream>

#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "common/units.h"

namespace sparsetrain::fuyou {

namespace {

constexpr std::uint64_t kF32 = 4;                 // fp32 weights, gradients, activations, logits
constexpr std::uint64_t kBF16 = 2;                // the CUDA tier's compute weights and activations
constexpr std::int64_t kPadFloats = 1024;         // 4096 bytes
constexpr std::int64_t kLogitBytes = 64ll << 20;  // gpt_model.cpp's default chunk rule

std::uint64_t u64(std::int64_t x) { return static_cast<std::uint64_t>(x); }

std::uint64_t round_up(std::uint64_t x, std::uint64_t to) { return (x + to - 1) / to * to; }

std::uint64_t room_left(std::uint64_t budget, std::uint64_t used) {
  return budget > used ? budget - used : 0;
}

// The one-slot store (updates in place, step_journal.h) holds every gradient of a step in the store
// before its first update: the states live there (never in RAM) and the block gradients leave the
// compute tier to add up there, resident blocks too.
bool in_place(const OffloadShape& shape) { return shape.store_slots == 1; }

std::uint64_t sum_items(const std::vector<PlanItem>& items) {
  std::uint64_t total = 0;
  for (const PlanItem& item : items) total += item.bytes;
  return total;
}

std::string list_items(const std::vector<PlanItem>& items) {
  std::string out;
  for (const PlanItem& item : items) {
    if (!out.empty()) out += " + ";
    out += item.what + " " + common::format_bytes(static_cast<double>(item.bytes));
  }
  return out;
}

void append_if(std::vector<PlanItem>& items, const std::optional<PlanItem>& item) {
  if (item) items.push_back(*item);
}

void refuse(const std::string& budget, std::uint64_t need, std::uint64_t have,
            const std::vector<PlanItem>& items, const std::string& hint) {
  auto exact = [](std::uint64_t b) {
    return common::format_bytes(static_cast<double>(b)) + " = " + std::to_string(b) + " B";
  };
  throw common::UsageError(budget + " does not fit: needs " + exact(need) + " (" +
                               list_items(items) + ") but has " + exact(have),
                           hint);
}

// What follows from the model and the shape alone, shared by every tier.
struct Sizes {
  std::int64_t l = 0;               // blocks
  std::int64_t c = 0;               // hidden size
  std::int64_t tokens = 0;          // B·T of one micro-batch
  std::uint64_t act = 0;            // bytes per compute-precision element: bf16 on CUDA, else fp32
  std::uint64_t states_bytes = 0;   // [master | m | v] of every unit, padded as in the store
  std::uint64_t staging_bytes = 0;  // one staging slot: [master | m | v] of the largest piece
  std::uint64_t block_params = 0;
  std::int64_t block_padded = 0;              // a block's floats per state segment
  std::uint64_t outside_params = 0;           // wte, wpe, ln_f
  std::int64_t block_state_piece_floats = 0;  // a block's largest state piece (not a block piece)
  std::int64_t piece_params = 0;              // a block's largest piece (model_config.h: MLP in)
  std::int64_t pieces = 0;                    // a block's pieces (GPT-2 4, Llama 5)
  ModelConfig config;                         // the model these sizes are of
  std::array<std::uint64_t, kMaxBlockPieces> piece_param_counts{};  // each piece's parameters
};

// UsageError unless P is a positive multiple of 1024 (4096-byte segments) and the granularity and
// store slots are ones the planner knows.
void check_shape(const ModelConfig& config, const OffloadShape& shape) {
  if (shape.state_piece_floats < kPadFloats || shape.state_piece_floats % kPadFloats != 0) {
    throw common::UsageError("state piece of " + std::to_string(shape.state_piece_floats) +
                                 " floats is not a positive multiple of 1024",
                             "leave the state piece size at its default");
  }
  const int pieces = config.block_piece_count();
  if (shape.pieces_per_block != 0 && shape.pieces_per_block != 1 &&
      shape.pieces_per_block != pieces) {
    throw common::UsageError(
        "streaming in " + std::to_string(shape.pieces_per_block) + " pieces per block",
        "stream whole blocks (1) or the block's " + std::to_string(pieces) + " pieces");
  }
  if (shape.store_slots < 0 || shape.store_slots > 2) {
    throw common::UsageError(
        "a store of " + std::to_string(shape.store_slots) + " slots per extent",
        "pass --store-slots 1 (in place), 2 (copy-on-write) or auto");
  }
}

Sizes derive_sizes(const ModelConfig& config, const OffloadShape& shape,
                   std::int64_t largest_piece_floats) {
  Sizes s;
  s.l = config.n_layer;
  s.c = config.n_embd;
  s.tokens = shape.micro_batch * shape.seq;
  s.act = shape.cuda ? kBF16 : kF32;
  std::int64_t padded = 0;
  for (std::int64_t u = 0; u < unit_count(config); ++u) padded += unit_padded_params(config, u);
  s.states_bytes = state_bytes(padded);
  s.staging_bytes = state_bytes(largest_piece_floats);
  s.block_params = u64(config.block_param_count());
  s.block_padded = unit_padded_params(config, 1);
  s.outside_params = u64(config.param_count()) - u64(s.l) * s.block_params;
  // The stream's loader converts and uploads a block piece by piece, and block gradients in the
  // store go through buffers of one piece.
  s.block_state_piece_floats = std::min<std::int64_t>(shape.state_piece_floats, s.block_padded);
  s.config = config;
  s.piece_params = config.max_block_piece_param_count();
  s.pieces = config.block_piece_count();
  for (int p = 0; p < s.pieces; ++p)
    s.piece_param_counts[static_cast<std::size_t>(p)] = u64(config.block_piece_param_count(p));
  return s;
}

// ---- Compute tier ------------------------------------------------------------------------------

// The compute tier's items by role; list() gives them in the plan's order.
struct ComputeItems {
  PlanItem weights;  // every compute weight, or (streaming) the embeddings + ln_f
  std::optional<PlanItem> stream_slots;   // streaming only
  std::optional<PlanItem> outside_grads;  // embedding + ln_f (+ head) gradient accumulators
  PlanItem grad_buffers;                  // block gradient buffers
  PlanItem inputs;                        // block inputs (activation checkpoints)
  PlanItem recompute;                     // one block's recompute
  PlanItem grads_in_flight;               // one block's (or piece's) weight gradients as made
  PlanItem logits;                        // one logits chunk + its gradient

  std::vector<PlanItem> list() const {
    std::vector<PlanItem> items{weights};
    append_if(items, stream_slots);
    append_if(items, outside_grads);
    items.insert(items.end(), {grad_buffers, inputs, recompute, grads_in_flight, logits});
    return items;
  }
  std::uint64_t total() const { return sum_items(list()); }
};

PlanItem size_grad_buffers(std::int64_t slots, std::uint64_t bytes) {
  return {std::to_string(slots) + " block gradient buffers", bytes};
}

// With K > 1 the micro-batches k > 0 form their wte gradient in a scratch of wte's shape, added
// once (gpt_model.h: exact sums, as data parallel's); K = 1 adds straight into the accumulator.
std::int64_t embedding_scratch_params(const ModelConfig& config, const OffloadShape& shape) {
  return shape.accum > 1 ? config.vocab * config.n_embd : 0;
}

// Every block resident: the compute tier before any streaming decision.
ComputeItems size_resident_compute(const ModelConfig& config, const OffloadShape& shape,
                                   const Sizes& s, std::int64_t grad_block_slots) {
  const std::int64_t rows = std::min<std::int64_t>(
      s.tokens, shape.loss_chunk_rows > 0
                    ? shape.loss_chunk_rows
                    : std::max<std::int64_t>(1, kLogitBytes / (config.vocab * 4)));
  ComputeItems items;
  items.weights = {shape.cuda ? "bf16 compute weights" : "fp32 compute weights",
                   s.act * u64(config.param_count())};
  items.outside_grads =
      PlanItem{std::string(config.llama() ? "embedding + norm + head gradient accumulators"
                                          : "embedding + ln_f gradient accumulators") +
                   (shape.accum > 1 ? " + the micro-batch wte scratch" : ""),
               kF32 * u64(unit_params(config, 0) + unit_params(config, config.n_layer + 1) +
                          embedding_scratch_params(config, shape))};
  items.grad_buffers = size_grad_buffers(grad_block_slots,
                                         kF32 * u64(grad_block_slots * config.block_param_count()));
  items.inputs = {"block inputs (L + 1)", s.act * u64((s.l + 1) * s.tokens * s.c)};
  // Estimate of one block's backward: its tensors (block_activations.h: 15·C + H + 4 floats a
  // token) and the gradients in flight, ~24 of [B, T, C]; the flash attention kernels (CPU and
  // CUDA) never hold the [T, T] matrix.
  // A Llama block's backward (llama_model.h): the recomputed tensors (the norms with their fp32
  // copies, q, k, v, the attention's graph with its rotations and repeated K/V heads, attention
  // out, gate, up, their product) and the gradients in flight, ~8·C + 8·H·d + 7·I floats a token.
  const std::uint64_t recompute_floats =
      config.llama()
          ? u64(8 * s.c + 8 * config.n_head * config.head_dim() + 7 * config.intermediate)
          : u64(24 * s.c);
  items.recompute = {"one block's recompute (estimate)", s.act * u64(s.tokens) * recompute_floats};
  // A block's backward makes its weight gradients (compute dtype) before they are added into a
  // buffer or leave: one block's at a time.
  items.grads_in_flight = {"one block's weight gradients in flight", s.act * s.block_params};
  // The loss backward's larger pass (gpt_model.h: lm_loss_backward): a chunk of rows' fp32
  // logits with the cross-entropy's and log-sum-exp's temporaries; or a vocabulary slice's
  // logits and softmax gradient for every row (fp32 and compute dtype), the head slice's
  // gradient, and h's gradient (fp32) with its slice's share.
  const std::int64_t slice = loss_vocab_slice_rows(config, s.tokens);
  const std::uint64_t by_rows = kF32 * u64(3 * rows * config.vocab);
  const std::uint64_t by_slice = (kF32 + s.act) * u64(s.tokens * slice) + s.act * u64(slice * s.c) +
                                 2 * kF32 * u64(s.tokens * s.c);
  items.logits = {"loss backward (logits chunk or vocabulary slice)", std::max(by_rows, by_slice)};
  return items;
}

// Bytes of the compute tier besides the streamed blocks: all but the weights item, plus the
// embeddings and ln_f, which stay.
std::uint64_t size_beside_blocks(const ComputeItems& items, const Sizes& s) {
  return items.total() - items.weights.bytes + s.act * s.outside_params;
}

// Bytes the compute tier keeps of the block inputs once they leave it: two input slots and the
// running activation.
std::uint64_t size_kept_inputs(const Sizes& s) { return 3 * s.act * u64(s.tokens * s.c); }

// Streaming: whether the block gradients leave the compute tier through a pool of two buffers.
// Always on CUDA (the GPU cannot hold an accumulator per block either) and when asked (tests);
// the CPU tier otherwise keeps a buffer per block (accumulation or clipping) while the smallest
// streaming layout still fits beside them: two slots, the block inputs through the store. With
// L <= 2 the pool of two saves nothing.
bool decide_grad_pool(const OffloadShape& shape, const OffloadBudgets& budgets, const Sizes& s,
                      std::int64_t grad_block_slots, const ComputeItems& items,
                      std::uint64_t slot_bytes) {
  const std::uint64_t smallest_with_buffers =
      size_beside_blocks(items, s) + 2 * slot_bytes - items.inputs.bytes + size_kept_inputs(s);
  return shape.cuda || shape.block_grads_in_cpu ||
         (s.l > 2 && grad_block_slots == s.l && smallest_with_buffers > budgets.compute_bytes);
}

// The block inputs leave the compute tier when `slot_bytes` slots of two do not fit beside the
// rest: CPU tier, through the store (input_stash.h); CUDA, in pinned CPU memory (cuda_transfer.h:
// CudaInputStash). Returns the room left for the slots.
std::uint64_t make_room_for_slots(const OffloadShape& shape, const OffloadBudgets& budgets,
                                  const Sizes& s, std::uint64_t slot_bytes, OffloadPlan& plan,
                                  ComputeItems& items, bool last_resort) {
  std::uint64_t room = room_left(budgets.compute_bytes, size_beside_blocks(items, s));
  if (room < 2 * slot_bytes) {
    items.inputs = {"2 block-input slots + the running activation", size_kept_inputs(s)};
    (shape.cuda ? plan.inputs_in_cpu : plan.inputs_in_store) = true;
    room = room_left(budgets.compute_bytes, size_beside_blocks(items, s));
  }
  // The last resort (pieces, on CUDA), still no room: the embedding and head gradients add up in
  // CPU memory instead (fp32, 8 GiB each for Llama 405B): the embedding's rows from each
  // micro-batch's x0 gradient, the head's vocabulary slice by slice as the loss backward makes
  // them.
  if (room < 2 * slot_bytes && last_resort && shape.cuda && items.outside_grads) {
    items.outside_grads.reset();
    plan.outside_grads_in_cpu = true;
    room = room_left(budgets.compute_bytes, size_beside_blocks(items, s));
  }
  return room;
}

// As many slots of `slot_bytes` as fit the room, at least two (one computing, one loading), at
// most one per use of a pass (`most`); the embeddings and ln_f stay in the compute tier.
void size_stream_slots(const Sizes& s, std::uint64_t room, std::uint64_t slot_bytes,
                       std::int64_t most, const std::string& what, OffloadPlan& plan,
                       ComputeItems& items) {
  plan.stream_slots = std::max<std::int64_t>(
      2, std::min<std::int64_t>(most, static_cast<std::int64_t>(room / slot_bytes)));
  plan.resident_blocks = 0;
  const std::string outside = s.config.llama()
                                  ? (s.config.tie_word_embeddings ? " embedding + norm (tied head)"
                                                                  : " embedding + norm + head")
                                  : " embeddings + ln_f";
  items.weights = {(s.act == kBF16 ? "bf16" : "fp32") + outside, s.act * s.outside_params};
  items.stream_slots =
      PlanItem{std::to_string(plan.stream_slots) + " " + what, u64(plan.stream_slots) * slot_bytes};
}

// Whole blocks stream from their fp32 master (the compute weights do not fit): each slot holds one
// block's compute weights (padded as in the store).
void stream_whole_blocks(const OffloadShape& shape, const OffloadBudgets& budgets, const Sizes& s,
                         OffloadPlan& plan, ComputeItems& items) {
  const std::uint64_t slot_bytes = s.act * u64(s.block_padded);
  if (in_place(shape) ||
      decide_grad_pool(shape, budgets, s, plan.grad_block_slots, items, slot_bytes)) {
    // Each block's gradients leave right after its backward and, with accumulation or clipping
    // (or in place), add up on the CPU side, in --cpu-mem or the store (plan_cpu_tier).
    plan.grad_block_slots = 2;
    plan.block_grads_in_cpu = in_place(shape) || shape.grad_clip || shape.accum > 1;
    items.grad_buffers = size_grad_buffers(plan.grad_block_slots,
                                           kF32 * u64(plan.grad_block_slots) * s.block_params);
  }
  const std::uint64_t room = make_room_for_slots(shape, budgets, s, slot_bytes, plan, items, false);
  plan.pieces_per_block = 1;
  plan.stream_slot_floats = s.block_padded;
  size_stream_slots(s, room, slot_bytes, s.l, "streamed block slots", plan, items);
}

// The blocks stream in pieces (two whole block slots do not fit): slots of the largest piece and
// two fp32 gradient buffers of one piece (the compute tier's bf16 gradients widened, as the whole
// blocks' drained buffers are). Every block's gradients leave piece by piece and add up on the CPU
// side even with K = 1 and no clipping: a unit's update needs all of its pieces' gradients.
void stream_pieces(const OffloadShape& shape, const OffloadBudgets& budgets, const Sizes& s,
                   OffloadPlan& plan, ComputeItems& items) {
  const std::uint64_t slot_bytes = s.act * u64(s.piece_params);
  plan.grad_block_slots = 2;
  plan.block_grads_in_cpu = true;
  items.grad_buffers = {"2 block-piece gradient buffers (fp32)", 2 * kF32 * u64(s.piece_params)};
  items.grads_in_flight = {"one piece's weight gradients in flight", s.act * u64(s.piece_params)};
  const std::uint64_t room = make_room_for_slots(shape, budgets, s, slot_bytes, plan, items, true);
  plan.pieces_per_block = static_cast<int>(s.pieces);
  plan.stream_slot_floats = s.piece_params;
  size_stream_slots(s, room, slot_bytes, s.pieces * s.l, "streamed block-piece slots", plan, items);
}

// Whole blocks unless they do not fit (or pieces are asked for): then pieces, unless whole blocks
// are asked for (the refusal then names the whole-block layout).
void stream_blocks(const OffloadShape& shape, const OffloadBudgets& budgets, const Sizes& s,
                   OffloadPlan& plan, ComputeItems& items) {
  if (shape.pieces_per_block != s.pieces) {
    const OffloadPlan before = plan;
    const ComputeItems resident = items;
    stream_whole_blocks(shape, budgets, s, plan, items);
    if (shape.pieces_per_block == 1 || items.total() <= budgets.compute_bytes) return;
    plan = before;
    items = resident;
  }
  stream_pieces(shape, budgets, s, plan, items);
}

// Decided first (streaming on CUDA adds CPU buffers), refused after the CPU tier: every block's
// compute weights when they fit, else the blocks stream. Sets resident_blocks, stream_slots,
// grad_block_slots, block_grads_in_cpu, inputs_in_cpu / inputs_in_store.
ComputeItems plan_compute_tier(const ModelConfig& config, const OffloadShape& shape,
                               const OffloadBudgets& budgets, const Sizes& s, OffloadPlan& plan) {
  plan.resident_blocks = s.l;
  // Every gradient must stay until the norm is known (clipping), or accumulate over K
  // micro-batches; in place, they leave through a pool of two to add up in the store.
  plan.grad_block_slots = in_place(shape)                        ? 2
                          : (shape.grad_clip || shape.accum > 1) ? s.l
                                                                 : std::min<std::int64_t>(2, s.l);
  plan.block_grads_in_cpu = in_place(shape);
  ComputeItems items = size_resident_compute(config, shape, s, plan.grad_block_slots);
  if (budgets.compute_bytes > 0 && items.total() > budgets.compute_bytes) {
    stream_blocks(shape, budgets, s, plan, items);
  }
  return items;
}

// ---- CPU tier ----------------------------------------------------------------------------------

// The CPU tier's items by role; list() gives them in the plan's order.
struct CpuItems {
  PlanItem states;  // master + m + v of every unit, or two staging slots of one piece
  std::optional<PlanItem> piece_read;          // CUDA streaming, states in the store: master piece
  std::optional<PlanItem> pinned_grads;        // CUDA
  std::optional<PlanItem> pinned_weights;      // CUDA
  std::optional<PlanItem> upload_buffers;      // CUDA streaming: bf16 conversion of a piece
  std::optional<PlanItem> grad_accumulators;   // block_grads_in_cpu, in RAM
  std::optional<PlanItem> pinned_inputs;       // inputs_in_cpu
  std::optional<PlanItem> outside_grads;       // outside_grads_in_cpu
  std::optional<PlanItem> grad_piece_buffers;  // block_grads_in_store, CPU tier
  std::optional<PlanItem> grad_piece_read;     // block_grads_in_store

  std::vector<PlanItem> list() const {
    std::vector<PlanItem> items{states};
    for (const auto* item :
         {&piece_read, &pinned_grads, &pinned_weights, &upload_buffers, &grad_accumulators,
          &pinned_inputs, &outside_grads, &grad_piece_buffers, &grad_piece_read}) {
      append_if(items, *item);
    }
    return items;
  }
  std::uint64_t total() const { return sum_items(list()); }
};

bool streams_on_cuda(const OffloadShape& shape, const OffloadPlan& plan) {
  return shape.cuda && plan.stream_slots > 0;
}

// The buffers needed wherever the states live. CUDA: two pinned fp32 gradient and two bf16 weight
// slots of one state piece (the weights of one piece go up while the next piece updates; the
// gradients come down piece by piece). Streaming on CUDA: two pinned bf16 buffers of one block
// piece (fp32 master -> bf16 -> upload); the block gradient accumulators when they add up on the
// CPU side; the block inputs when they go to pinned memory.
CpuItems size_cpu_buffers(const OffloadShape& shape, const Sizes& s, OffloadPlan& plan) {
  CpuItems items;
  if (shape.cuda) {
    // Two gradient slots although the gradient downloads are synchronous: the second is used
    // when the block gradients add up in the store (the drain downloads into one while the
    // other's piece is written, and the update reads ahead into the other), else it is spare,
    // 4 B per float of a piece.
    plan.pinned_slots = 2;
    items.pinned_grads =
        PlanItem{"2 pinned fp32 gradient slots", 2 * segment_bytes(plan.largest_piece_floats)};
    items.pinned_weights =
        PlanItem{"2 pinned bf16 weight slots", 2 * kBF16 * u64(plan.largest_piece_floats)};
  }
  const bool cuda_stream = streams_on_cuda(shape, plan);
  if (cuda_stream) {
    items.upload_buffers =
        PlanItem{"2 pinned bf16 piece upload buffers", 2 * kBF16 * u64(s.block_state_piece_floats)};
  }
  if (plan.block_grads_in_cpu) {
    items.grad_accumulators = PlanItem{std::to_string(s.l) + " fp32 block gradient accumulators",
                                       kF32 * u64(s.l) * s.block_params};
  }
  if (cuda_stream && plan.inputs_in_cpu) {
    items.pinned_inputs =
        PlanItem{std::to_string(s.l) + " pinned bf16 block inputs",
                 u64(s.l) * u64(common::io::align_up(kBF16 * u64(s.tokens * s.c)))};
  }
  if (plan.outside_grads_in_cpu) {
    items.outside_grads =
        PlanItem{std::string("fp32 embedding + norm + head gradient accumulators") +
                     (shape.accum > 1 ? " + the micro-batch wte scratch" : ""),
                 kF32 * (s.outside_params + u64(embedding_scratch_params(s.config, shape)))};
  }
  return items;
}

// The states stay in RAM when they fit beside the buffers; else two staging slots of one state
// piece each (one updating, one loading or writing back), and streaming on CUDA reads each piece
// of master from the store into one fp32 buffer.
void place_states(const OffloadShape& shape, const OffloadBudgets& budgets, const Sizes& s,
                  OffloadPlan& plan, CpuItems& items) {
  const std::uint64_t pinned_bytes =
      shape.cuda ? items.pinned_grads->bytes + items.pinned_weights->bytes : 0;
  std::uint64_t stream_bytes = 0;
  for (const auto* item : {&items.upload_buffers, &items.grad_accumulators, &items.pinned_inputs,
                           &items.outside_grads}) {
    if (*item) stream_bytes += (*item)->bytes;
  }
  plan.states_in_cpu =
      !in_place(shape) && s.states_bytes + pinned_bytes + stream_bytes <= budgets.cpu_bytes;
  plan.state_slots = plan.states_in_cpu ? 0 : 2;
  items.states =
      plan.states_in_cpu
          ? PlanItem{"fp32 master + Adam m, v", s.states_bytes}
          : PlanItem{"2 staging slots of one state piece's master + m + v", 2 * s.staging_bytes};
  // Read from the store, or (pieces: ranges of it) copied out of RAM, one state piece at a time.
  if (streams_on_cuda(shape, plan) && (!plan.states_in_cpu || plan.pieces_per_block > 1)) {
    items.piece_read =
        PlanItem{"fp32 piece read buffer", segment_bytes(s.block_state_piece_floats)};
  }
}

// The block gradient accumulators do not fit beside the staging buffers either: they go to the
// store (when that needs less RAM: not for a model of very few, small blocks), and RAM keeps one
// gradient piece read buffer (the drain adds a stored piece to the incoming one) and, on the CPU
// tier, two gradient piece buffers (CUDA: its pinned gradient slots). They stay in RAM before the
// states do: they are touched every micro-batch. (With K = 1, the states in RAM and the
// accumulators in the store would read less from the store, 4 B per parameter a step against 16;
// not planned: the states are 3x the accumulators' RAM.)
void store_grads_if_smaller(const OffloadShape& shape, const Sizes& s, OffloadPlan& plan,
                            CpuItems& items) {
  const std::uint64_t grad_piece_bytes = segment_bytes(s.block_state_piece_floats);
  CpuItems stored = items;
  stored.grad_accumulators.reset();
  if (!shape.cuda) {
    stored.grad_piece_buffers = PlanItem{"2 fp32 gradient piece buffers", 2 * grad_piece_bytes};
  }
  stored.grad_piece_read = PlanItem{"fp32 gradient piece read buffer", grad_piece_bytes};
  if (in_place(shape) || stored.total() < items.total()) {
    plan.block_grads_in_store = true;
    items = std::move(stored);
  }
}

// Sets states_in_cpu, state_slots, pinned_slots, block_grads_in_store (always in place).
CpuItems plan_cpu_tier(const OffloadShape& shape, const OffloadBudgets& budgets, const Sizes& s,
                       OffloadPlan& plan) {
  CpuItems items = size_cpu_buffers(shape, s, plan);
  place_states(shape, budgets, s, plan, items);
  if (in_place(shape) ||
      (items.total() > budgets.cpu_bytes && plan.block_grads_in_cpu && !plan.states_in_cpu)) {
    store_grads_if_smaller(shape, s, plan, items);
  }
  return items;
}

// The CPU tier is checked before the compute tier: its refusal names the floor of --cpu-mem.
void refuse_over_budgets(const OffloadShape& shape, const OffloadBudgets& budgets,
                         const OffloadPlan& plan) {
  if (plan.cpu_total > budgets.cpu_bytes) {
    refuse(
        "--cpu-mem", plan.cpu_total, budgets.cpu_bytes, plan.cpu_items,
        "raise --cpu-mem to at least " + common::format_bytes(static_cast<double>(plan.cpu_total)));
  }
  if (budgets.compute_bytes > 0 && plan.compute_total > budgets.compute_bytes) {
    refuse("--gpu-mem (compute tier)", plan.compute_total, budgets.compute_bytes,
           plan.compute_items,
           "raise --gpu-mem to at least " +
               common::format_bytes(static_cast<double>(plan.compute_total)) +
               ", or lower --micro-batch/--seq" +
               (shape.pieces_per_block == 1
                    ? " (whole-block streaming needs two block slots at least, beside two "
                      "block-input slots), or drop --stream block"
                    : " (streaming needs two slots of a block piece at least, beside two "
                      "block-input slots)"));
  }
}

// ---- Kept activations --------------------------------------------------------------------------

// Bytes per token of a kept set: fp32 on the CPU tier; on CUDA the compute dtype, but the
// LayerNorms' mean and rstd are fp32.
std::uint64_t kept_bytes_per_token(const ModelConfig& config, ActivationSet set, bool cuda) {
  if (!cuda) return kF32 * u64(activation_set_floats_per_token(config, set, false));
  std::uint64_t bytes = 0;
  for (int a = 0; a < kBlockActivations; ++a) {
    if (!set.has(a)) continue;
    const bool norm = a == kLn1Out || a == kLn2Out;
    bytes += kBF16 * u64(activation_floats_per_token(config, a, true) - (norm ? 2 : 0)) +
             (norm ? 2 * kF32 : 0);
  }
  return bytes;
}

// Streaming with more than two slots: gives up as many of the extra ones as `bytes` needs (kept
// activations go before extra stream slots: two suffice to overlap the loads), and returns the
// bytes freed.
std::uint64_t give_up_stream_slots(std::uint64_t bytes, const Sizes& s, OffloadPlan& plan) {
  if (plan.stream_slots <= 2) return 0;
  const std::uint64_t slot = s.act * u64(plan.stream_slot_floats);
  const std::int64_t fewer = std::min<std::int64_t>(
      plan.stream_slots - 2, static_cast<std::int64_t>((bytes + slot - 1) / slot));
  const std::string old = std::to_string(plan.stream_slots) + " streamed ";
  for (PlanItem& item : plan.compute_items) {
    if (item.what.rfind(old, 0) != 0) continue;
    item.what = std::to_string(plan.stream_slots - fewer) + item.what.substr(old.size() - 10);
    item.bytes -= u64(fewer) * slot;
  }
  plan.stream_slots -= fewer;
  plan.compute_total -= u64(fewer) * slot;
  return u64(fewer) * slot;
}

// The kept activations' items in each tier.
struct ActivationItems {
  std::vector<PlanItem> compute, cpu;
};

// Puts each block's kept set in a tier, from block L-1 down (the backward needs the last blocks
// first; the first blocks' store reads have the longest to be prefetched): the compute tier while
// the room the rest of the plan leaves holds it, then CPU memory, then the store, or the asked
// tier; the stream's slots past two give way to them. Blocks in the store or (CUDA, over PCIe) in
// pinned memory come back through two slots of the largest in the compute tier, reserved when a
// block goes there; on CUDA the store's go through two pinned staging buffers of the largest in
// CPU memory, reserved likewise. UsageError when a block's set fits nowhere.
ActivationItems place_activations(const ModelConfig& config, const OffloadShape& shape,
                                  const OffloadBudgets& budgets, const Sizes& s,
                                  const std::vector<ActivationSet>& kept, OffloadPlan& plan) {
  ActivationPlan& out = plan.activations;
  std::uint64_t compute_used = plan.compute_total;
  const std::uint64_t cpu_used = plan.cpu_total;
  const std::optional<ActivationTier> asked = shape.activations.tier;
  // The stream's slots past two are room too (given up below where the activations need it).
  const std::uint64_t spare_slots =
      plan.stream_slots > 2 ? u64(plan.stream_slots - 2) * s.act * u64(plan.stream_slot_floats) : 0;
  const std::uint64_t compute_room =
      budgets.compute_bytes == 0 ? ~std::uint64_t{0}
                                 : room_left(budgets.compute_bytes, compute_used) + spare_slots;
  const std::uint64_t cpu_room = room_left(budgets.cpu_bytes, cpu_used);
  std::vector<std::uint64_t> bytes(kept.size());
  std::uint64_t largest = 0;
  for (std::size_t l = 0; l < kept.size(); ++l) {
    bytes[l] = activation_set_bytes(config, kept[l], shape.micro_batch, shape.seq, shape.cuda);
    largest = std::max(largest, bytes[l]);
  }
  // Blocks kept away from the compute tier come back through two slots of the largest there:
  // the store's, and (CUDA) pinned memory's. One pass with `reserve` bytes of the compute room and
  // `cpu_reserve` of the CPU room kept for the slots and the store's staging buffers (CUDA).
  const auto through_slots = [&](ActivationTier tier) {
    return tier == ActivationTier::kStore || (shape.cuda && tier == ActivationTier::kCpu);
  };
  struct Largest {
    std::uint64_t through_slots = 0, in_store = 0;
  };
  auto assign = [&](std::uint64_t reserve, std::uint64_t cpu_reserve) {
    out.kept = kept;
    out.tiers.assign(kept.size(), ActivationTier::kCompute);
    out.compute_bytes = out.cpu_bytes = out.store_bytes = 0;
    Largest largest_in;
    const std::uint64_t room = compute_room > reserve ? compute_room - reserve : 0;
    const std::uint64_t cpu_left = cpu_room > cpu_reserve ? cpu_room - cpu_reserve : 0;
    for (std::size_t i = kept.size(); i-- > 0;) {
      if (kept[i].empty()) continue;
      const bool fits_compute = out.compute_bytes + bytes[i] <= room;
      const bool fits_cpu = out.cpu_bytes + bytes[i] <= cpu_left;
      ActivationTier tier = asked          ? *asked
                            : fits_compute ? ActivationTier::kCompute
                            : fits_cpu     ? ActivationTier::kCpu
                                           : ActivationTier::kStore;
      // Refused with the tier's budget, the rest of it and the kept activations so far.
      const auto refuse_block = [&](const std::string& budget, std::uint64_t rest,
                                    std::uint64_t kept_bytes, std::uint64_t have,
                                    const std::string& hint) {
        refuse(budget + " for block " + std::to_string(i) + "'s kept activations (" +
                   kept[i].to_string() + ")",
               rest + kept_bytes + bytes[i], have,
               {{"the rest of " +
                     std::string(budget == "--cpu-mem" ? "the CPU tier" : "the compute tier"),
                 rest},
                {"kept activations", kept_bytes + bytes[i]}},
               hint);
      };
      if (tier == ActivationTier::kCompute && !fits_compute) {
        refuse_block("--gpu-mem (compute tier)", compute_used + reserve, out.compute_bytes,
                     budgets.compute_bytes,
                     "keep fewer activations (--activations), or let them go to CPU memory or the "
                     "store (--activations-in auto)");
      }
      if (tier == ActivationTier::kCpu && !fits_cpu) {
        refuse_block("--cpu-mem", cpu_used + cpu_reserve, out.cpu_bytes, budgets.cpu_bytes,
                     "keep fewer activations (--activations), raise --cpu-mem, or let them go to "
                     "the store (--activations-in auto)");
      }
      out.tiers[i] = tier;
      (tier == ActivationTier::kCompute ? out.compute_bytes
       : tier == ActivationTier::kCpu   ? out.cpu_bytes
                                        : out.store_bytes) += bytes[i];
      if (through_slots(tier)) {
        largest_in.through_slots = std::max(largest_in.through_slots, bytes[i]);
      }
      if (tier == ActivationTier::kStore) {
        largest_in.in_store = std::max(largest_in.in_store, bytes[i]);
      }
    }
    return largest_in;
  };
  std::uint64_t reserve = 0, cpu_reserve = 0;
  Largest placed = assign(0, 0);
  if (placed.through_slots > 0 && !(asked && through_slots(*asked))) {
    reserve = 2 * largest;
    placed = assign(reserve, 0);
  }
  if (shape.cuda && placed.in_store > 0 && !asked) {
    cpu_reserve = 2 * largest;
    placed = assign(reserve, cpu_reserve);
  }
  const std::uint64_t slot_largest = placed.through_slots;
  ActivationItems items;
  auto blocks_in = [&](ActivationTier tier) {
    std::int64_t n = 0;
    for (std::size_t l = 0; l < kept.size(); ++l) n += !kept[l].empty() && out.tiers[l] == tier;
    return std::to_string(n);
  };
  if (out.compute_bytes > 0) {
    items.compute.push_back(
        {"kept activations of " + blocks_in(ActivationTier::kCompute) + " blocks",
         out.compute_bytes});
  }
  const std::uint64_t slots = 2 * slot_largest;
  const std::uint64_t need = compute_used + out.compute_bytes + slots;
  if (budgets.compute_bytes > 0 && need > budgets.compute_bytes) {
    compute_used -= give_up_stream_slots(need - budgets.compute_bytes, s, plan);
  }
  if (slot_largest > 0) {
    if (budgets.compute_bytes > 0 &&
        compute_used + out.compute_bytes + slots > budgets.compute_bytes) {
      refuse(std::string("--gpu-mem (compute tier) for the kept activations' slots (") +
                 (shape.cuda ? "pinned memory" : "the store") + ")",
             compute_used + out.compute_bytes + slots, budgets.compute_bytes,
             {{"the rest of the compute tier", compute_used},
              {"kept activations", out.compute_bytes},
              {"2 kept-activation slots", slots}},
             "keep fewer activations (--activations) or raise --gpu-mem");
    }
    items.compute.push_back(
        {shape.cuda ? "2 kept-activation slots (pinned)" : "2 kept-activation slots (store)",
         slots});
  }
  if (out.cpu_bytes > 0) {
    items.cpu.push_back({std::string(shape.cuda ? "pinned " : "") + "kept activations of " +
                             blocks_in(ActivationTier::kCpu) + " blocks",
                         out.cpu_bytes});
  }
  if (shape.cuda && placed.in_store > 0) {
    const std::uint64_t staging = 2 * placed.in_store;
    if (cpu_used + out.cpu_bytes + staging > budgets.cpu_bytes) {
      refuse("--cpu-mem for the kept activations' staging buffers (pinned, for the store)",
             cpu_used + out.cpu_bytes + staging, budgets.cpu_bytes,
             {{"the rest of the CPU tier", cpu_used},
              {"kept activations", out.cpu_bytes},
              {"2 kept-activation staging buffers", staging}},
             "keep fewer activations (--activations) or raise --cpu-mem");
    }
    items.cpu.push_back({"2 kept-activation staging buffers (pinned, for the store)", staging});
  }
  return items;
}

// ---- SSD ---------------------------------------------------------------------------------------

// One block input in the store: fp32 [B, T, C] (the store holds them only for the CPU tier).
std::uint64_t size_block_input(const Sizes& s) { return kF32 * u64(s.tokens * s.c); }

// The bytes of the embeddings' and ln_f's gradients: what the one-slot store seals each step
// (into "step_grads.<u>", of the units' padded floats).
std::uint64_t size_outside_grads(const ModelConfig& config) {
  return segment_bytes(unit_params(config, 0) + unit_params(config, config.n_layer + 1));
}

// The store's tensors with the states in `slots` slots per extent: per unit its state pieces'
// [master | m | v] (state_pieces.h) — two slots: each extent twice (copy-on-write); one slot: a
// ring of the unit's pieces plus one spare piece, in whole extents (state_placement.h:
// StatesInPlace) —, train.state (durable: two slots either way), and the scratch tensors (one
// slot): the block inputs and gradients when they go there, and in place the outside units'
// gradients and the step journal's two records.
std::vector<PlanItem> size_store(const ModelConfig& config, const OffloadShape& shape,
                                 const OffloadBudgets& budgets, const Sizes& s,
                                 const OffloadPlan& plan, std::int64_t slots) {
  const std::uint64_t extent = std::max<std::uint64_t>(4096, budgets.store_extent_bytes);
  std::uint64_t store_bytes = 2 * extent;  // train.state
  for (std::int64_t u = 0; u < unit_count(config); ++u) {
    const std::int64_t padded = unit_padded_params(config, u);
    if (slots == 2) {
      store_bytes += 2 * round_up(state_bytes(padded), extent);
    } else {
      const std::vector<StatePiece> pieces = unit_pieces(padded, shape.state_piece_floats);
      store_bytes += u64(static_cast<std::int64_t>(pieces.size()) + 1) *
                     round_up(pieces.front().bytes(), extent);
    }
  }
  std::vector<PlanItem> items{{slots == 2
                                   ? "store: master + m + v, two slots per extent"
                                   : "store: master + m + v in place, one spare piece per unit",
                               store_bytes}};
  // Scratch (rewritten before they are read): one slot in either mode.
  const std::string scratch = ", scratch (one slot per extent)";
  if (plan.inputs_in_store) {
    items.push_back({"store: " + std::to_string(s.l) + " block inputs" + scratch,
                     u64(s.l) * round_up(size_block_input(s), extent)});
  }
  if (plan.activations.store_bytes > 0) {
    std::uint64_t bytes = 0;
    std::int64_t blocks = 0;
    for (std::size_t l = 0; l < plan.activations.kept.size(); ++l) {
      if (plan.activations.kept[l].empty() || plan.activations.tiers[l] != ActivationTier::kStore)
        continue;
      bytes += round_up(activation_set_bytes(config, plan.activations.kept[l], shape.micro_batch,
                                             shape.seq, shape.cuda),
                        extent);
      ++blocks;
    }
    items.push_back(
        {"store: kept activations of " + std::to_string(blocks) + " blocks" + scratch, bytes});
  }
  if (plan.block_grads_in_store) {
    items.push_back({"store: " + std::to_string(s.l) + " block gradient accumulators" + scratch,
                     u64(s.l) * round_up(segment_bytes(s.block_padded), extent)});
  }
  if (slots == 1) {
    items.push_back({"store: embedding + ln_f gradients and the step journal" + scratch,
                     round_up(segment_bytes(unit_padded_params(config, 0)), extent) +
                         round_up(segment_bytes(unit_padded_params(config, s.l + 1)), extent) +
                         2 * extent});
  }
  return items;
}

// The layout's store with the shape's slots, and what two would need.
void size_ssd(const ModelConfig& config, const OffloadShape& shape, const OffloadBudgets& budgets,
              const Sizes& s, OffloadPlan& plan) {
  plan.store_slots = shape.store_slots;
  plan.ssd_items = size_store(config, shape, budgets, s, plan, plan.store_slots);
  plan.ssd_total = sum_items(plan.ssd_items);
  plan.ssd_two_slot_bytes = plan.store_slots == 2
                                ? plan.ssd_total
                                : sum_items(size_store(config, shape, budgets, s, plan, 2));
  plan.ssd_bytes_per_param = static_cast<double>(plan.ssd_total) /
                             static_cast<double>(std::max<std::int64_t>(1, plan.params));
}

// ---- Per-iteration traffic ---------------------------------------------------------------------

// The store is the checkpoint: states in the store are written every step, states in RAM on
// commit steps (every commit_every-th).
std::uint64_t count_state_writes(const OffloadShape& shape, const Sizes& s,
                                 const OffloadPlan& plan) {
  return plan.states_in_cpu ? s.states_bytes / u64(std::max<std::int64_t>(1, shape.commit_every))
                            : s.states_bytes;
}

// What streaming moves of every block per micro-batch. Whole blocks load twice (forward; backward
// with its recompute), the padded master each time. Pieces load exactly their parameters: every
// piece in the forward, the pieces the recompute reads (block_activations.h: recompute_pieces;
// with nothing kept 0-2), every piece for its own backward: 3·N_b − N_3 with nothing kept,
// 2·N_b with the activations that need weights kept.
struct StreamTraffic {
  std::uint64_t read_floats = 0;    // fp32 master floats read (store or RAM)
  std::uint64_t upload_params = 0;  // parameters converted to the compute dtype and uploaded
};

StreamTraffic stream_traffic(const Sizes& s, const OffloadPlan& plan) {
  if (plan.pieces_per_block > 1) {
    std::uint64_t loaded = 0;
    for (const ActivationSet& kept : plan.activations.kept) {
      loaded += 2 * s.block_params;
      const PieceFlags reads = recompute_pieces(s.config, kept);
      for (std::size_t p = 0; p < reads.size(); ++p) {
        if (reads[p]) loaded += s.piece_param_counts[p];
      }
    }
    return {loaded, loaded};
  }
  return {2 * u64(s.l) * u64(s.block_padded), 2 * u64(s.l) * s.block_params};
}

// Streamed blocks read their fp32 master from the store at every load.
std::uint64_t count_stream_reads(const OffloadShape& shape, const Sizes& s,
                                 const OffloadPlan& plan) {
  return plan.stream_slots > 0 && !plan.states_in_cpu
             ? u64(shape.accum) * kF32 * stream_traffic(s, plan).read_floats
             : 0;
}

// The stored gradient accumulators' drains of one block over a step's K micro-batches, bytes. A
// drain covers every state piece its gradients meet: written each micro-batch, read back from
// micro-batch 1 on — and at micro-batch 0 too when a block piece meets only part of the state
// piece (grad_accumulators.h: the rest is read and written back as stored). Whole blocks: one
// drain of every state piece.
struct DrainTraffic {
  std::uint64_t read_bytes = 0, write_bytes = 0;
};

DrainTraffic count_block_drains(const ModelConfig& config, const OffloadShape& shape,
                                const Sizes& s, const OffloadPlan& plan) {
  const std::vector<StatePiece> pieces = unit_pieces(s.block_padded, shape.state_piece_floats);
  const std::int64_t block = config.block_param_count();
  std::uint64_t every = 0, at_first = 0;  // bytes per micro-batch, and those micro-batch 0 reads
  for (const StatePiece& piece : pieces) {
    const std::int64_t lo = piece.first, hi = std::min(piece.first + piece.floats, block);
    if (plan.pieces_per_block == 1) {
      every += piece.master_bytes();
      continue;
    }
    for (int p = 0; p < config.block_piece_count(); ++p) {
      const std::int64_t first = config.block_piece_first_param(p);
      const std::int64_t last = first + config.block_piece_param_count(p);
      if (std::max(lo, first) >= std::min(hi, last)) continue;  // they do not meet
      every += piece.master_bytes();
      if (lo < first || hi > last) at_first += piece.master_bytes();  // only part of it
    }
  }
  const std::uint64_t k = u64(shape.accum);
  return {(k - 1) * every + at_first, k * every};
}

void count_ssd_traffic(const ModelConfig& config, const OffloadShape& shape, const Sizes& s,
                       OffloadPlan& plan) {
  plan.ssd_read_bytes =
      (plan.states_in_cpu ? 0 : s.states_bytes) + count_stream_reads(shape, s, plan);
  plan.ssd_write_bytes = count_state_writes(shape, s, plan);
  if (in_place(shape)) plan.ssd_write_bytes += size_outside_grads(config);  // the seal
  if (plan.inputs_in_store) {  // each micro-batch writes its L block inputs and reads them back
    plan.ssd_read_bytes += u64(shape.accum * s.l) * size_block_input(s);
    plan.ssd_write_bytes += u64(shape.accum * s.l) * size_block_input(s);
  }
  // And the activations kept in the store.
  plan.ssd_read_bytes += u64(shape.accum) * plan.activations.store_bytes;
  plan.ssd_write_bytes += u64(shape.accum) * plan.activations.store_bytes;
  if (plan.block_grads_in_store) {
    // The drains, and the update's one read of each accumulator.
    const DrainTraffic drains = count_block_drains(config, shape, s, plan);
    plan.ssd_read_bytes += u64(s.l) * (drains.read_bytes + segment_bytes(s.block_padded));
    plan.ssd_write_bytes += u64(s.l) * drains.write_bytes;
  }
}

void count_pcie_traffic(const OffloadShape& shape, const Sizes& s, OffloadPlan& plan) {
  const std::uint64_t token_bytes = 2 * 8 * u64(s.tokens * shape.accum);  // int64 ids + targets
  if (streams_on_cuda(shape, plan)) {
    // Up: the streamed blocks' bf16 weights at every load (stream_traffic), the other units'
    // updated weights once, the token ids and targets. Down: the other units' fp32 gradients
    // once; each block's once per step, or once per micro-batch when they add up in CPU memory.
    const StreamTraffic traffic = stream_traffic(s, plan);
    plan.pcie_h2d_bytes =
        kBF16 * s.outside_params + u64(shape.accum) * kBF16 * traffic.upload_params + token_bytes;
    // The other units' gradients: in CPU memory, each micro-batch's bf16 head gradient (every
    // row) and x0 gradient come down instead.
    const std::uint64_t outside_down =
        plan.outside_grads_in_cpu
            ? u64(shape.accum) * kBF16 * (u64(s.outside_params) + u64(s.tokens * s.c))
            : kF32 * s.outside_params;
    plan.pcie_d2h_bytes = outside_down + u64((plan.block_grads_in_cpu ? shape.accum : 1) * s.l) *
                                             kF32 * s.block_params;
    if (plan.inputs_in_cpu) {  // each micro-batch's L block inputs go down and come back up
      plan.pcie_d2h_bytes += u64(shape.accum * s.l) * kBF16 * u64(s.tokens * s.c);
      plan.pcie_h2d_bytes += u64(shape.accum * s.l) * kBF16 * u64(s.tokens * s.c);
    }
  } else if (shape.cuda) {
    // Down: every fp32 gradient once per step. Up: every bf16 weight once per step, plus the
    // micro-batches' token ids and targets.
    plan.pcie_d2h_bytes = kF32 * u64(plan.params);
    plan.pcie_h2d_bytes = kBF16 * u64(plan.params) + token_bytes;
  }
  if (shape.cuda) {  // kept activations off the GPU (pinned memory, the store through pinned
                     // buffers): down in the forward, up in the backward
    const std::uint64_t away = plan.activations.cpu_bytes + plan.activations.store_bytes;
    plan.pcie_d2h_bytes += u64(shape.accum) * away;
    plan.pcie_h2d_bytes += u64(shape.accum) * away;
  }
}

// FLOPs with the policy's recompute, SSD and PCIe bytes, per optimizer step of K micro-batches.
void count_traffic(const ModelConfig& config, const OffloadShape& shape, const Sizes& s,
                   OffloadPlan& plan) {
  double recompute = 0;  // per token, over the blocks
  for (const ActivationSet& kept : plan.activations.kept) {
    recompute += block_recompute_flops_per_token(config, shape.seq, kept, shape.cuda);
  }
  const double tokens = static_cast<double>(s.tokens * shape.accum);
  plan.activations.recompute_flops = recompute * tokens;
  plan.flops = (config.train_flops_per_token(shape.seq) + recompute) * tokens;
  count_ssd_traffic(config, shape, s, plan);
  count_pcie_traffic(shape, s, plan);
}

// ---- Bound -------------------------------------------------------------------------------------

// Clipping (and the one-slot store, whose updates wait for the seal after the backward): no update
// can start before the global norm, i.e. before the last backward ends. So
// the step is at least the compute (or the streamed blocks' reads, which feed it) followed by what
// only the updates do: read the states the staging slots could not prefetch (two pieces, fewer
// bytes than two slots) and the stored block gradients, write the states back, run AdamW. A sum,
// not a max: clipping serializes them.
double bound_compute_then_update(const ModelConfig& config, const OffloadShape& shape,
                                 const OffloadRates& rates, const Sizes& s,
                                 const OffloadPlan& plan) {
  // Before the norm the store also takes the block inputs' and kept activations' round trips.
  std::uint64_t activation_bytes = u64(shape.accum) * plan.activations.store_bytes;
  if (plan.inputs_in_store) activation_bytes += u64(shape.accum * s.l) * size_block_input(s);
  const double before =
      std::max({plan.flops / rates.compute_flops_per_s,
                static_cast<double>(count_stream_reads(shape, s, plan) + activation_bytes) /
                    rates.ssd_read_bytes_per_s,
                static_cast<double>(activation_bytes) / rates.ssd_write_bytes_per_s});
  std::uint64_t reads =
      plan.states_in_cpu ? 0 : s.states_bytes - std::min(s.states_bytes, 2 * s.staging_bytes);
  if (plan.block_grads_in_store) reads += u64(s.l) * segment_bytes(s.block_padded);
  const std::uint64_t writes =
      count_state_writes(shape, s, plan) + (in_place(shape) ? size_outside_grads(config) : 0);
  // Reads and writes at once: at least each alone, and the mixed rate's time unless doing them
  // one after the other is faster (the mixed rate is measured half and half).
  const double read_s = static_cast<double>(reads) / rates.ssd_read_bytes_per_s;
  const double write_s = static_cast<double>(writes) / rates.ssd_write_bytes_per_s;
  double io = std::max(read_s, write_s);
  if (rates.ssd_mixed_bytes_per_s > 0 && reads > 0) {
    io = std::max(io, std::min(read_s + write_s,
                               static_cast<double>(reads + writes) / rates.ssd_mixed_bytes_per_s));
  }
  const double params = static_cast<double>(plan.params);
  return before + std::max(io, params / rates.cpu_adam_params_per_s);
}

// Every term of the bound (amount per iteration / rate), in the plan's order; a term whose rate
// was not measured is left out.
void add_bound_terms(const ModelConfig& config, const OffloadShape& shape,
                     const OffloadRates& rates, const Sizes& s, OffloadPlan& plan) {
  const double params = static_cast<double>(plan.params);
  const auto per_s = [](std::uint64_t amount, double rate) {
    return static_cast<double>(amount) / rate;
  };
  plan.terms.push_back({"compute", plan.flops / rates.compute_flops_per_s});
  plan.terms.push_back({"ssd_read", per_s(plan.ssd_read_bytes, rates.ssd_read_bytes_per_s)});
  plan.terms.push_back({"ssd_write", per_s(plan.ssd_write_bytes, rates.ssd_write_bytes_per_s)});
  if (rates.ssd_mixed_bytes_per_s > 0 && plan.ssd_read_bytes > 0) {
    plan.terms.push_back({"ssd_read_write", per_s(plan.ssd_read_bytes + plan.ssd_write_bytes,
                                                  rates.ssd_mixed_bytes_per_s)});
  }
  plan.terms.push_back({"cpu_adam", params / rates.cpu_adam_params_per_s});
  if (rates.pcie_h2d_bytes_per_s > 0) {
    plan.terms.push_back({"pcie_h2d", per_s(plan.pcie_h2d_bytes, rates.pcie_h2d_bytes_per_s)});
  }
  if (rates.pcie_d2h_bytes_per_s > 0) {
    plan.terms.push_back({"pcie_d2h", per_s(plan.pcie_d2h_bytes, rates.pcie_d2h_bytes_per_s)});
  }
  if (streams_on_cuda(shape, plan) && rates.stream_convert_params_per_s > 0) {
    // Every streamed load converts what it uploads (stream_traffic).
    plan.terms.push_back(
        {"stream_convert",
         static_cast<double>(u64(shape.accum) * stream_traffic(s, plan).upload_params) /
             rates.stream_convert_params_per_s});
  }
  if (shape.grad_clip || in_place(shape)) {
    plan.terms.push_back(
        {"compute_then_update", bound_compute_then_update(config, shape, rates, s, plan)});
  }
}

// The bound is the largest term; the first of equal ones binds.
void pick_binding(OffloadPlan& plan) {
  for (const BoundTerm& term : plan.terms) {
    if (term.seconds > plan.bound_seconds) {
      plan.bound_seconds = term.seconds;
      plan.binding = term.name;
    }
  }
}

}  // namespace

std::int64_t unit_count(const ModelConfig& config) { return config.n_layer + 2; }

std::int64_t unit_params(const ModelConfig& config, std::int64_t unit) {
  if (config.llama()) {  // embed | blocks | norm (+ lm_head unless tied)
    if (unit == 0) return config.vocab * config.n_embd;
    if (unit <= config.n_layer) return config.block_param_count();
    return config.n_embd + (config.tie_word_embeddings ? 0 : config.vocab * config.n_embd);
  }
  if (unit == 0) return (config.vocab + config.n_positions) * config.n_embd;
  if (unit <= config.n_layer) return config.block_param_count();
  return 2 * config.n_embd;
}

std::int64_t unit_padded_params(const ModelConfig& config, std::int64_t unit) {
  return (unit_params(config, unit) + kPadFloats - 1) / kPadFloats * kPadFloats;
}

std::int64_t max_unit_padded_params(const ModelConfig& config) {
  std::int64_t best = 0;
  for (std::int64_t u = 0; u < unit_count(config); ++u)
    best = std::max(best, unit_padded_params(config, u));
  return best;
}

namespace {

// The plan of every other placement (`plan`, refused where it does not fit) with each block keeping
// kept[l]: the activations placed in the room left, the store sized, the traffic and the bound.
OffloadPlan finish_layout(const ModelConfig& config, const OffloadShape& shape,
                          const OffloadBudgets& budgets, const OffloadRates& rates,
                          const Sizes& sizes, OffloadPlan plan,
                          const std::vector<ActivationSet>& kept) {
  const ActivationItems items = place_activations(config, shape, budgets, sizes, kept, plan);
  plan.compute_items.insert(plan.compute_items.end(), items.compute.begin(), items.compute.end());
  plan.cpu_items.insert(plan.cpu_items.end(), items.cpu.begin(), items.cpu.end());
  plan.compute_total = sum_items(plan.compute_items);
  plan.cpu_total = sum_items(plan.cpu_items);
  refuse_over_budgets(shape, budgets, plan);
  size_ssd(config, shape, budgets, sizes, plan);
  count_traffic(config, shape, sizes, plan);
  add_bound_terms(config, shape, rates, sizes, plan);
  pick_binding(plan);
  return plan;
}

// The activations in the order the cost model tries them: FLOPs saved per byte kept, the larger
// saving first among equals (fc, qkv, resid at C/2 FLOP per byte; attn at about T), those that save
// no FLOPs left out (the LayerNorms and GELU: memory time only, not modelled).
std::vector<int> ranked_activations(const ModelConfig& config, const OffloadShape& shape) {
  std::vector<int> ranked;
  for (int a = 0; a < kBlockActivations; ++a) {
    if (activation_recompute_flops_per_token(config, shape.seq, a, shape.cuda) > 0) {
      ranked.push_back(a);
    }
  }
  auto saved = [&](int a) {
    return activation_recompute_flops_per_token(config, shape.seq, a, shape.cuda);
  };
  auto per_byte = [&](int a) {
    return saved(a) /
           static_cast<double>(kept_bytes_per_token(config, ActivationSet().with(a), shape.cuda));
  };
  std::stable_sort(ranked.begin(), ranked.end(), [&](int x, int y) {
    if (per_byte(x) != per_byte(y)) return per_byte(x) > per_byte(y);
    return saved(x) > saved(y);
  });
  return ranked;
}

// What a candidate adds to one block's set: first the activations that save FLOPs, as ranked;
// then, streaming in pieces, the pairs that together spare a piece's reload for the recompute
// ({ln1, qkv}: piece 0; {ln2, fc}: piece 2) and the single ones that complete a pair already
// kept (ln1, ln2): a reload saved is SSD or PCIe time, not FLOPs.
std::vector<ActivationSet> ranked_candidates(const ModelConfig& config, const OffloadShape& shape,
                                             const OffloadPlan& placed) {
  std::vector<ActivationSet> out;
  for (const int a : ranked_activations(config, shape)) out.push_back(ActivationSet().with(a));
  if (placed.pieces_per_block > 1) {
    out.push_back(ActivationSet().with(kLn1Out).with(kQkv));
    out.push_back(ActivationSet().with(kLn2Out).with(kMlpPreGelu));
    out.push_back(ActivationSet().with(kLn1Out));
    out.push_back(ActivationSet().with(kLn2Out));
  }
  return out;
}

std::string describe_candidate(std::int64_t block, ActivationSet added, const OffloadPlan& trial) {
  char text[192];
  std::snprintf(text, sizeof text, "%s of block %lld (%s) predicts %.4g s, bound by %s",
                added.to_string().c_str(), static_cast<long long>(block),
                activation_tier_name(trial.activations.tiers[static_cast<std::size_t>(block)]),
                trial.bound_seconds, trial.binding.c_str());
  return text;
}

// A candidate is kept only for a shorter predicted iteration by this fraction at least: below it,
// what the model leaves out (copies, prefetch depth) outweighs the gain.
constexpr double kMinimumGain = 1e-4;

// The cost model (ActivationPlan): from recompute, each candidate (block, what it adds) in the
// order of ranked_candidates, blocks L-1 … 0, is kept when the plan with it fits and predicts a
// shorter iteration; keep-all replaces the result where it predicts shorter still.
OffloadPlan choose_activations(const ModelConfig& config, const OffloadShape& shape,
                               const OffloadBudgets& budgets, const OffloadRates& rates,
                               const Sizes& sizes, const OffloadPlan& placed) {
  const auto layers = static_cast<std::size_t>(config.n_layer);
  std::vector<ActivationSet> current(layers);
  OffloadPlan best = finish_layout(config, shape, budgets, rates, sizes, placed, current);
  const std::uint64_t have = budgets.ssd_free_bytes + budgets.ssd_used_bytes;
  const std::uint64_t base_ssd = best.ssd_total;
  const auto fits_ssd = [&](const OffloadPlan& p) {
    return p.ssd_total <= std::max(have, base_ssd);  // the store's own refusal comes later
  };
  ActivationPlan record;
  record.recompute_seconds = best.bound_seconds;
  std::optional<OffloadPlan> keep_all;
  try {
    OffloadPlan all = finish_layout(config, shape, budgets, rates, sizes, placed,
                                    std::vector<ActivationSet>(layers, ActivationSet::all()));
    if (fits_ssd(all)) {
      record.keep_all_seconds = all.bound_seconds;
      keep_all = std::move(all);
    } else {
      record.keep_all_refusal =
          "--ssd does not fit: needs " + common::format_bytes(static_cast<double>(all.ssd_total));
    }
  } catch (const common::UsageError& e) {
    record.keep_all_refusal = e.what();
  }
  double next_seconds = 0;
  for (const ActivationSet& added : ranked_candidates(config, shape, placed)) {
    for (std::size_t l = layers; l-- > 0;) {
      std::vector<ActivationSet> trial_sets = current;
      ActivationSet set = trial_sets[l];
      for (int a = 0; a < kBlockActivations; ++a) {
        if (added.has(a)) set = set.with(a);
      }
      if (set == trial_sets[l]) continue;  // nothing new for this block
      trial_sets[l] = set;
      std::optional<OffloadPlan> trial;
      try {
        trial = finish_layout(config, shape, budgets, rates, sizes, placed, trial_sets);
      } catch (const common::UsageError&) {
        continue;
      }
      if (!fits_ssd(*trial)) continue;
      if (trial->bound_seconds < best.bound_seconds * (1 - kMinimumGain)) {
        best = std::move(*trial);
        current = std::move(trial_sets);
      } else if (record.next_best.empty() || trial->bound_seconds < next_seconds) {
        next_seconds = trial->bound_seconds;
        record.next_best = describe_candidate(static_cast<std::int64_t>(l), added, *trial);
      }
    }
  }
  // One candidate at a time can miss what only the whole set gives (e.g. every reload spared):
  // keep-all instead where it predicts shorter still.
  if (keep_all && keep_all->bound_seconds < best.bound_seconds * (1 - kMinimumGain)) {
    best = std::move(*keep_all);
  }
  record.mode = "auto";
  record.kept = best.activations.kept;
  record.tiers = best.activations.tiers;
  record.compute_bytes = best.activations.compute_bytes;
  record.cpu_bytes = best.activations.cpu_bytes;
  record.store_bytes = best.activations.store_bytes;
  record.recompute_flops = best.activations.recompute_flops;
  best.activations = std::move(record);
  return best;
}

// Every tier with the shape's store slots (1 or 2), the SSD sized but not yet refused.
OffloadPlan plan_layout(const ModelConfig& config, const OffloadShape& shape,
                        const OffloadBudgets& budgets, const OffloadRates& rates) {
  OffloadPlan plan;
  plan.params = config.param_count();
  plan.state_piece_floats = shape.state_piece_floats;
  // The largest piece any unit has: a staging slot holds its master, m and v.
  plan.largest_piece_floats = std::min(max_unit_padded_params(config), shape.state_piece_floats);
  const Sizes sizes = derive_sizes(config, shape, plan.largest_piece_floats);

  const ComputeItems compute = plan_compute_tier(config, shape, budgets, sizes, plan);
  plan.compute_items = compute.list();
  plan.compute_total = sum_items(plan.compute_items);
  const CpuItems cpu = plan_cpu_tier(shape, budgets, sizes, plan);
  plan.cpu_items = cpu.list();
  plan.cpu_total = sum_items(plan.cpu_items);
  refuse_over_budgets(shape, budgets, plan);

  const auto layers = static_cast<std::size_t>(config.n_layer);
  using Mode = ActivationRequest::Mode;
  const ActivationRequest& asked = shape.activations;
  if (config.llama()) {  // block_activations.h's sets are GPT-2's: Llama blocks keep their inputs
    const bool keeps = asked.mode == Mode::kKeepAll ||
                       std::any_of(asked.sets.begin(), asked.sets.end(),
                                   [](const ActivationSet& set) { return !set.empty(); });
    if (keeps) {
      throw common::UsageError(
          "Llama-family blocks keep only their inputs so far (no activation sets)",
          "pass --activations auto or recompute");
    }
    OffloadPlan out = finish_layout(config, shape, budgets, rates, sizes, plan,
                                    std::vector<ActivationSet>(layers));
    out.activations.mode = asked.mode == Mode::kAuto ? "auto" : "recompute";
    out.activations.recompute_seconds = out.bound_seconds;
    out.activations.keep_all_refusal = "Llama-family blocks keep only their inputs so far";
    return out;
  }
  if (asked.mode == Mode::kAuto) {
    return choose_activations(config, shape, budgets, rates, sizes, plan);
  }
  std::vector<ActivationSet> kept(layers);
  if (asked.mode == Mode::kKeepAll) kept.assign(layers, ActivationSet::all());
  if (asked.mode == Mode::kList) {
    if (asked.sets.size() != layers) {
      throw common::UsageError("an activation list for " + std::to_string(asked.sets.size()) +
                                   " blocks, but the model has " + std::to_string(layers),
                               "name blocks 0-" + std::to_string(layers - 1));
    }
    kept = asked.sets;
  }
  OffloadPlan out = finish_layout(config, shape, budgets, rates, sizes, plan, kept);
  out.activations.mode = asked.mode == Mode::kRecompute ? "recompute"
                         : asked.mode == Mode::kKeepAll ? "keep-all"
                                                        : "list";
  return out;
}

OffloadShape with_store_slots(OffloadShape shape, std::int64_t slots) {
  shape.store_slots = slots;
  return shape;
}

}  // namespace

OffloadPlan plan_offload(const ModelConfig& config, const OffloadShape& shape,
                         const OffloadBudgets& budgets, const OffloadRates& rates) {
  config.validate();
  check_shape(config, shape);
  // Two slots per extent where they fit (or when asked), else one; refused when the asked or the
  // smaller layout does not fit either, naming the other's need.
  const std::uint64_t have = budgets.ssd_free_bytes + budgets.ssd_used_bytes;
  const OffloadPlan plan =
      plan_layout(config, with_store_slots(shape, shape.store_slots == 1 ? 1 : 2), budgets, rates);
  if (plan.ssd_total <= have) return plan;
  auto exact = [](std::uint64_t b) {
    return common::format_bytes(static_cast<double>(b)) + " = " + std::to_string(b) + " B";
  };
  if (plan.store_slots == 1) {
    refuse("--ssd", plan.ssd_total, have, plan.ssd_items,
           "free space on the --ssd directories or add more of them");
  }
  std::optional<OffloadPlan> in_place_plan;  // none when another budget refuses it
  try {
    in_place_plan = plan_layout(config, with_store_slots(shape, 1), budgets, rates);
  } catch (const common::UsageError&) {
    if (shape.store_slots == 0) throw;
    refuse("--ssd", plan.ssd_total, have, plan.ssd_items,
           "free space on the --ssd directories or add more of them");
  }
  OffloadPlan& one = *in_place_plan;
  if (one.ssd_total >= plan.ssd_total) {  // units of one piece each: a spare piece is a copy
    refuse("--ssd", plan.ssd_total, have, plan.ssd_items,
           "free space on the --ssd directories or add more of them (one slot per extent, in "
           "place, saves nothing here: it keeps a spare piece per unit, and these units are one "
           "piece each)");
  }
  if (shape.store_slots == 0 && one.ssd_total <= have) {
    one.ssd_two_slot_bytes = plan.ssd_total;  // the two-slot layout's own (states maybe in RAM)
    return one;
  }
  if (shape.store_slots == 0) {
    refuse("--ssd", one.ssd_total, have, one.ssd_items,
           "free space on the --ssd directories or add more of them (two slots per extent, "
           "copy-on-write, would need " +
               exact(plan.ssd_total) + ")");
  }
  refuse("--ssd", plan.ssd_total, have, plan.ssd_items,
         "free space on the --ssd directories, add more of them, or pass --store-slots 1 "
         "(updates in place, journaled: " +
             exact(one.ssd_total) + ")");
  return plan;  // not reached: refuse throws
}

const char* activation_tier_name(ActivationTier tier) {
  switch (tier) {
    case ActivationTier::kCompute:
      return "compute";
    case ActivationTier::kCpu:
      return "cpu";
    case ActivationTier::kStore:
      return "store";
  }
  return "?";
}

std::optional<ActivationTier> parse_activation_tier(const std::string& text) {
  if (text == "auto") return std::nullopt;
  for (ActivationTier tier :
       {ActivationTier::kCompute, ActivationTier::kCpu, ActivationTier::kStore}) {
    if (text == activation_tier_name(tier)) return tier;
  }
  throw common::UsageError("--activations-in '" + text + "' is not a tier",
                           "pass auto, compute, cpu or store");
}

namespace {

// "3" or "0-11" -> [first, last], checked against the model's blocks.
std::pair<std::int64_t, std::int64_t> parse_block_range(const std::string& text,
                                                        std::int64_t layers) {
  const std::string hint = "name blocks 0-" + std::to_string(layers - 1) +
                           " as N or N-M, e.g. --activations '0-3:attn,fc;4:all'";
  auto number = [&](const std::string& t) {
    if (t.empty() || t.find_first_not_of("0123456789") != std::string::npos || t.size() > 12) {
      throw common::UsageError("--activations: '" + text + "' is not a block or a range", hint);
    }
    return std::stoll(t);
  };
  const std::size_t dash = text.find('-');
  const std::int64_t first = number(text.substr(0, dash));
  const std::int64_t last = dash == std::string::npos ? first : number(text.substr(dash + 1));
  if (last < first) {
    throw common::UsageError("--activations: the range '" + text + "' is empty", hint);
  }
  if (last >= layers) {
    throw common::UsageError("--activations: block " + std::to_string(last) +
                                 " does not exist: the model has " + std::to_string(layers) +
                                 " blocks",
                             hint);
  }
  return {first, last};
}

}  // namespace

ActivationRequest parse_activation_request(const std::string& text, std::int64_t layers) {
  using Mode = ActivationRequest::Mode;
  ActivationRequest request;
  if (text == "auto") {
    request.mode = Mode::kAuto;
    return request;
  }
  if (text == "recompute" || text == "none") {
    request.mode = Mode::kRecompute;
    return request;
  }
  if (text == "keep-all" || text == "all") {
    request.mode = Mode::kKeepAll;
    return request;
  }
  request.mode = Mode::kList;
  if (text.find(':') == std::string::npos) {  // one list for every block
    request.sets.assign(static_cast<std::size_t>(layers), parse_activation_set(text));
    return request;
  }
  request.sets.assign(static_cast<std::size_t>(layers), ActivationSet());
  std::vector<bool> named(static_cast<std::size_t>(layers), false);
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ';')) {
    const std::size_t colon = part.find(':');
    if (colon == std::string::npos) {
      throw common::UsageError("--activations: '" + part + "' names no blocks",
                               "write BLOCKS:LIST parts separated by ';', e.g. "
                               "'0-3:attn,fc;4:all'");
    }
    const auto [first, last] = parse_block_range(part.substr(0, colon), layers);
    const ActivationSet set = parse_activation_set(part.substr(colon + 1));
    for (std::int64_t l = first; l <= last; ++l) {
      if (named[static_cast<std::size_t>(l)]) {
        throw common::UsageError(
            "--activations: block " + std::to_string(l) + " is named twice in '" + text + "'",
            "name each block once");
      }
      named[static_cast<std::size_t>(l)] = true;
      request.sets[static_cast<std::size_t>(l)] = set;
    }
  }
  return request;
}

std::int64_t ActivationPlan::blocks_keeping() const {
  std::int64_t n = 0;
  for (const ActivationSet& set : kept) n += !set.empty();
  return n;
}

OffloadRates with_assumed_ssds(OffloadRates rates, const AssumedSsds& ssds) {
  const double n = static_cast<double>(ssds.count);
  rates.ssd_read_bytes_per_s = n * ssds.read_bytes_per_s_each;
  rates.ssd_write_bytes_per_s = n * ssds.write_bytes_per_s_each;
  rates.ssd_mixed_bytes_per_s = 0;
  return rates;
}

std::int64_t largest_micro_batch(const ModelConfig& config, OffloadShape shape,
                                 const OffloadBudgets& budgets, const OffloadRates& rates,
                                 std::int64_t limit) {
  const auto fits = [&](std::int64_t b) {
    shape.micro_batch = b;
    try {
      plan_offload(config, shape, budgets, rates);
      return true;
    } catch (const common::UsageError&) {
      return false;
    }
  };
  if (limit < 1 || !fits(1)) return 0;
  std::int64_t good = 1, bad = limit + 1;  // fits(good), !fits(bad) (or past the limit)
  while (bad - good > 1) {
    const std::int64_t mid = good + (bad - good) / 2;
    (fits(mid) ? good : bad) = mid;
  }
  return good;
}

namespace {

// "keep attn,fc in blocks 0-11 (store), …" from the per-block sets and tiers.
std::string describe_kept_blocks(const ActivationPlan& a) {
  std::string out;
  std::size_t l = 0;
  while (l < a.kept.size()) {
    std::size_t end = l + 1;
    while (end < a.kept.size() && a.kept[end] == a.kept[l] && a.tiers[end] == a.tiers[l]) ++end;
    if (!a.kept[l].empty()) {
      if (!out.empty()) out += "; ";
      out += a.kept[l].to_string() + " in block" + (end - l > 1 ? "s " : " ") + std::to_string(l) +
             (end - l > 1 ? "-" + std::to_string(end - 1) : "") + " (" +
             activation_tier_name(a.tiers[l]) + ")";
    }
    l = end;
  }
  return out.empty() ? "nothing kept: every block recomputed from its input" : "kept " + out;
}

std::string describe_activations(const ActivationPlan& a) {
  auto bytes = [](std::uint64_t b) { return common::format_bytes(static_cast<double>(b)); };
  std::string out = a.mode + ": " + describe_kept_blocks(a);
  if (a.blocks_keeping() > 0) {
    out += "; per micro-batch " + bytes(a.compute_bytes) + " compute tier, " + bytes(a.cpu_bytes) +
           " cpu, " + bytes(a.store_bytes) + " store";
  }
  if (a.mode == "auto") {
    char text[160];
    std::snprintf(text, sizeof text, "\n              cost model: recompute predicts %.4g s, ",
                  a.recompute_seconds);
    out += text;
    if (a.keep_all_seconds > 0) {
      std::snprintf(text, sizeof text, "keep-all %.4g s", a.keep_all_seconds);
      out += text;
    } else {
      out += "keep-all does not fit (" + a.keep_all_refusal + ")";
    }
    out += "; the best candidate not kept: " +
           (a.next_best.empty() ? std::string("none (every candidate was kept or does not fit)")
                                : a.next_best + ", no shorter");
  }
  return out;
}

}  // namespace

std::string OffloadPlan::describe() const {
  std::ostringstream out;
  auto bytes = [](std::uint64_t b) { return common::format_bytes(static_cast<double>(b)); };
  out << "states        fp32 master + Adam m, v: "
      << (states_in_cpu ? "in CPU memory (written to the store on commit steps)"
                        : "in the SSD store, " + std::to_string(state_slots) +
                              " staging slots of a piece of at most " +
                              bytes(segment_bytes(largest_piece_floats)) + " of each")
      << "\n";
  if (stream_slots > 0) {
    const bool pieces = pieces_per_block > 1;
    out << "blocks        streamed "
        << (pieces ? "in pieces (" + std::to_string(pieces_per_block) + " a block; the largest " +
                         std::to_string(stream_slot_floats) + " parameters)"
                   : std::string("whole"))
        << " through " << stream_slots << " compute-tier slots from their fp32 master ("
        << (states_in_cpu ? "in RAM" : "read from the store") << "), "
        << (pieces ? std::string("for the forward, the pieces the recompute reads (") +
                         (pieces_per_block == kLlamaBlockPieces ? "0-3" : "0-2 with nothing kept") +
                         ") and each piece's backward"
                   : "before each forward and each backward (recompute)")
        << (pinned_slots > 0 ? ", converted to bf16 in pinned memory and uploaded on a copy stream"
                             : "")
        << (block_grads_in_store ? "; block gradients add up in the store"
            : block_grads_in_cpu ? "; block gradients add up in CPU memory"
                                 : "")
        << (inputs_in_store ? "; block inputs go through the store" : "")
        << (inputs_in_cpu ? "; block inputs go to pinned CPU memory and back" : "")
        << (outside_grads_in_cpu ? "; embedding and head gradients add up in CPU memory" : "")
        << "\n";
  }
  out << "activations   " << describe_activations(activations) << "\n";
  out << "compute tier  " << bytes(compute_total) << ": " << list_items(compute_items) << "\n";
  out << "cpu           " << bytes(cpu_total) << ": " << list_items(cpu_items) << "\n";
  char per_param[48];
  std::snprintf(per_param, sizeof per_param, " (%.2f B per parameter)", ssd_bytes_per_param);
  out << "ssd           " << bytes(ssd_total) << per_param << ": " << list_items(ssd_items) << "\n";
  out << "crash         "
      << (store_slots == 2
              ? "copy-on-write: --resume continues from the last commit"
              : "updates in place, journaled piece by piece: --resume finishes the step a crash "
                "interrupted (two slots per extent would need " +
                    bytes(ssd_two_slot_bytes) + ")")
      << "\n";
  out << "per iteration ssd read " << bytes(ssd_read_bytes) << ", ssd write "
      << bytes(ssd_write_bytes) << ", pcie h2d " << bytes(pcie_h2d_bytes) << ", d2h "
      << bytes(pcie_d2h_bytes) << ", ";
  char flops_text[96];
  std::snprintf(flops_text, sizeof flops_text,
                "%.3g FLOP (6N + 12LCT per token + %.3g recomputed)\n", flops,
                activations.recompute_flops);
  out << flops_text;
  out << "lower bound   ";
  for (const BoundTerm& term : terms) {
    char text[96];
    std::snprintf(text, sizeof text, "%s %.4g s  ", term.name.c_str(), term.seconds);
    out << text;
  }
  char text[96];
  std::snprintf(text, sizeof text, "=> %.4g s, bound by %s\n", bound_seconds, binding.c_str());
  out << text;
  return out.str();
}

}  // namespace sparsetrain::fuyou
