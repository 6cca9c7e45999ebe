// plan_offload (see offload_plan.h): sizes the compute tier, then the CPU tier, refuses what does
// not fit, sizes the SSD store, counts each iteration's traffic and computes the bound's terms.
// Each tier's items are named fields of a struct until the end, where they become the ordered
// PlanItem lists.
#include "fuyou/offload/offload_plan.h"

#include <algorithm>
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
  std::uint64_t mlp_out_params = 0;           // the MLP out piece's, which no recompute needs
};

// UsageError unless P is a positive multiple of 1024 (4096-byte segments) and the granularity and
// store slots are ones the planner knows.
void check_shape(const OffloadShape& shape) {
  if (shape.state_piece_floats < kPadFloats || shape.state_piece_floats % kPadFloats != 0) {
    throw common::UsageError("state piece of " + std::to_string(shape.state_piece_floats) +
                                 " floats is not a positive multiple of 1024",
                             "leave the state piece size at its default");
  }
  if (shape.pieces_per_block != 0 && shape.pieces_per_block != 1 &&
      shape.pieces_per_block != kBlockPieces) {
    throw common::UsageError(
        "streaming in " + std::to_string(shape.pieces_per_block) + " pieces per block",
        "stream whole blocks (1) or the block's " + std::to_string(kBlockPieces) + " pieces");
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
  s.piece_params = config.max_block_piece_param_count();
  s.mlp_out_params = u64(config.block_piece_param_count(kMlpOutPiece));
  return s;
}

// ---- Compute tier ------------------------------------------------------------------------------

// The compute tier's items by role; list() gives them in the plan's order.
struct ComputeItems {
  PlanItem weights;  // every compute weight, or (streaming) the embeddings + ln_f
  std::optional<PlanItem> stream_slots;  // streaming only
  PlanItem outside_grads;                // embedding + ln_f gradient accumulators
  PlanItem grad_buffers;                 // block gradient buffers
  PlanItem inputs;                       // block inputs (activation checkpoints)
  PlanItem recompute;                    // one block's recompute
  PlanItem logits;                       // one logits chunk + its gradient

  std::vector<PlanItem> list() const {
    std::vector<PlanItem> items{weights};
    append_if(items, stream_slots);
    items.insert(items.end(), {outside_grads, grad_buffers, inputs, recompute, logits});
    return items;
  }
  std::uint64_t total() const { return sum_items(list()); }
};

PlanItem size_grad_buffers(std::int64_t slots, std::uint64_t bytes) {
  return {std::to_string(slots) + " block gradient buffers", bytes};
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
  items.outside_grads = {"embedding + ln_f gradient accumulators",
                         kF32 * u64(unit_params(config, 0) + 2 * s.c)};
  items.grad_buffers = size_grad_buffers(grad_block_slots,
                                         kF32 * u64(grad_block_slots * config.block_param_count()));
  items.inputs = {"block inputs (L + 1)", s.act * u64((s.l + 1) * s.tokens * s.c)};
  // Estimate of one block's recompute under autograd: ~24 activations of [B, T, C] (LN, qkv,
  // attention, 4C MLP, their gradients) plus the attention matrix and its gradient.
  items.recompute = {"one block's recompute (estimate)",
                     s.act * u64(24 * s.tokens * s.c +
                                 2 * shape.micro_batch * config.n_head * shape.seq * shape.seq)};
  items.logits = {"logits chunk + its gradient", kF32 * u64(3 * rows * config.vocab)};
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
                                  ComputeItems& items) {
  const std::uint64_t fixed = size_beside_blocks(items, s);
  std::uint64_t room = room_left(budgets.compute_bytes, fixed);
  if (room < 2 * slot_bytes) {
    const std::uint64_t kept = size_kept_inputs(s);
    room = room_left(budgets.compute_bytes, fixed - items.inputs.bytes + kept);
    items.inputs = {"2 block-input slots + the running activation", kept};
    (shape.cuda ? plan.inputs_in_cpu : plan.inputs_in_store) = true;
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
  items.weights = {s.act == kBF16 ? "bf16 embeddings + ln_f" : "fp32 embeddings + ln_f",
                   s.act * s.outside_params};
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
  const std::uint64_t room = make_room_for_slots(shape, budgets, s, slot_bytes, plan, items);
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
  const std::uint64_t room = make_room_for_slots(shape, budgets, s, slot_bytes, plan, items);
  plan.pieces_per_block = kBlockPieces;
  plan.stream_slot_floats = s.piece_params;
  size_stream_slots(s, room, slot_bytes, kBlockPieces * s.l, "streamed block-piece slots", plan,
                    items);
}

// Whole blocks unless they do not fit (or pieces are asked for): then pieces, unless whole blocks
// are asked for (the refusal then names the whole-block layout).
void stream_blocks(const OffloadShape& shape, const OffloadBudgets& budgets, const Sizes& s,
                   OffloadPlan& plan, ComputeItems& items) {
  if (shape.pieces_per_block != kBlockPieces) {
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
  std::optional<PlanItem> grad_piece_buffers;  // block_grads_in_store, CPU tier
  std::optional<PlanItem> grad_piece_read;     // block_grads_in_store

  std::vector<PlanItem> list() const {
    std::vector<PlanItem> items{states};
    for (const auto* item :
         {&piece_read, &pinned_grads, &pinned_weights, &upload_buffers, &grad_accumulators,
          &pinned_inputs, &grad_piece_buffers, &grad_piece_read}) {
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
  for (const auto* item : {&items.upload_buffers, &items.grad_accumulators, &items.pinned_inputs}) {
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

// What streaming moves of each block per micro-batch, decided by the granularity alone. Whole
// blocks load twice (forward; backward with its recompute), the padded master each time. Pieces
// load exactly their parameters: every piece in the forward, pieces 0-2 for the recompute of the
// pieces' inputs (gpt_model.h: block_piece_inputs), every piece for its own backward: 3·N_b − N_3.
struct StreamTraffic {
  std::uint64_t read_floats = 0;    // fp32 master floats read (store or RAM)
  std::uint64_t upload_params = 0;  // parameters converted to the compute dtype and uploaded
};

StreamTraffic stream_traffic(const Sizes& s, const OffloadPlan& plan) {
  if (plan.pieces_per_block > 1) {
    const std::uint64_t loaded = 3 * s.block_params - s.mlp_out_params;
    return {loaded, loaded};
  }
  return {2 * u64(s.block_padded), 2 * s.block_params};
}

// Streamed blocks read their fp32 master from the store at every load.
std::uint64_t count_stream_reads(const OffloadShape& shape, const Sizes& s,
                                 const OffloadPlan& plan) {
  return plan.stream_slots > 0 && !plan.states_in_cpu
             ? u64(shape.accum * s.l) * kF32 * stream_traffic(s, plan).read_floats
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
    for (int p = 0; p < kBlockPieces; ++p) {
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
    plan.pcie_h2d_bytes = kBF16 * s.outside_params +
                          u64(shape.accum * s.l) * kBF16 * traffic.upload_params + token_bytes;
    plan.pcie_d2h_bytes =
        kF32 * s.outside_params +
        u64((plan.block_grads_in_cpu ? shape.accum : 1) * s.l) * kF32 * s.block_params;
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
}

// FLOPs with block recompute, SSD and PCIe bytes, per optimizer step of K micro-batches.
void count_traffic(const ModelConfig& config, const OffloadShape& shape, const Sizes& s,
                   OffloadPlan& plan) {
  plan.flops = (plan.pieces_per_block > 1 ? config.train_flops_per_token_piece_recompute(shape.seq)
                                          : config.train_flops_per_token_recompute(shape.seq)) *
               static_cast<double>(s.tokens * shape.accum);
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
  const double before = std::max(
      plan.flops / rates.compute_flops_per_s,
      static_cast<double>(count_stream_reads(shape, s, plan)) / rates.ssd_read_bytes_per_s);
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
         static_cast<double>(u64(shape.accum * s.l) * stream_traffic(s, plan).upload_params) /
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
  size_ssd(config, shape, budgets, sizes, plan);

  count_traffic(config, shape, sizes, plan);
  add_bound_terms(config, shape, rates, sizes, plan);
  pick_binding(plan);
  return plan;
}

OffloadShape with_store_slots(OffloadShape shape, std::int64_t slots) {
  shape.store_slots = slots;
  return shape;
}

}  // namespace

OffloadPlan plan_offload(const ModelConfig& config, const OffloadShape& shape,
                         const OffloadBudgets& budgets, const OffloadRates& rates) {
  config.validate();
  check_shape(shape);
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
        << (pieces ? "in pieces (" + std::to_string(pieces_per_block) +
                         " a block, one matmul each; the largest " +
                         std::to_string(stream_slot_floats) + " parameters)"
                   : std::string("whole"))
        << " through " << stream_slots << " compute-tier slots from their fp32 master ("
        << (states_in_cpu ? "in RAM" : "read from the store") << "), "
        << (pieces ? "three times a micro-batch but the MLP out piece twice (forward, the "
                     "pieces' inputs, each piece's backward)"
                   : "before each forward and each backward (recompute)")
        << (pinned_slots > 0 ? ", converted to bf16 in pinned memory and uploaded on a copy stream"
                             : "")
        << (block_grads_in_store ? "; block gradients add up in the store"
            : block_grads_in_cpu ? "; block gradients add up in CPU memory"
                                 : "")
        << (inputs_in_store ? "; block inputs go through the store" : "")
        << (inputs_in_cpu ? "; block inputs go to pinned CPU memory and back" : "") << "\n";
  }
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
  char flops_text[64];
  std::snprintf(flops_text, sizeof flops_text, "%.3g FLOP (%s per token)\n", flops,
                pieces_per_block > 1 ? "10N - 2L(4C^2 + C) + 20LCT" : "8N + 16LCT");
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
