// The Fuyou placement planner. plan_offload decides where every byte of a run lives and what each
// iteration costs at least, before anything runs.
//   In: the model, the training shape (OffloadShape), the budgets (OffloadBudgets: --cpu-mem,
//   --gpu-mem, the --ssd free space) and the rates (OffloadRates). Out (OffloadPlan): where the
//   fp32 master weights and Adam m, v live; resident or streamed blocks; where the block gradients
//   add up and the block inputs wait; each tier's items and total; the SSD and PCIe bytes and FLOPs
//   per iteration; and the lower bound
//     T_iter >= max(T_compute, T_pcie_h2d, T_pcie_d2h, T_ssd_read, T_ssd_write, T_cpu_adam)
//   (DESIGN.md) with its binding term, plus `ssd_read_write` (a measured mixed rate: one disk does
//   not read and write at full speed at once), `stream_convert` and, with clipping,
//   `compute_then_update`: compute + the SSD I/O and AdamW only the updates do, a sum, as no update
//   starts before the global norm. Compute and AdamW are not summed otherwise: measured, AdamW's
//   memory-bound passes overlapped the GEMMs almost for free (926 M model: 17.4 s/step, compute
//   alone 17.1 s).
//   Invariants: pure arithmetic, no torch, no I/O (free disk space is an input); a plan that does
//   not fit is refused (UsageError naming the budget, its items and the flag) before anything runs.
//   Not modelled: the token data in RAM, allocator slack, torch's own workspace.
// Tiers, decided in this order:
//   Compute (--gpu-mem: the GPU, bf16 weights and inputs; CPU-only, a RAM budget, all fp32): every
//   block's weights, else the blocks stream through stream_slots slots from their fp32 master —
//   whole blocks where two block slots fit, else the blocks' pieces (pieces_per_block);
//   streaming on CUDA (or with no room for a gradient buffer per block) sends the block gradients
//   out through two buffers to add up on the CPU side (K > 1 or clipping), and when even two slots
//   leave no room the block inputs leave too (CUDA: pinned RAM; CPU: the store).
//   CPU (--cpu-mem): the states, else two staging slots of one state piece; CUDA's pinned gradient
//   and weight slots; streaming's buffers; the block gradient accumulators (block_grads_in_cpu),
//   or, when they do not fit, the store holds them and RAM one piece's buffers.
//   SSD (--ssd): the store's unit tensors, two slots per extent (one, updating in place, when two
//   do not fit or --store-slots 1 asks); stashed inputs and stored gradients, one slot (scratch).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fuyou/model/block_activations.h"
#include "fuyou/model/model_config.h"
#include "fuyou/offload/state_pieces.h"

namespace sparsetrain::fuyou {

struct OffloadBudgets {
  std::uint64_t cpu_bytes = 0;       // --cpu-mem: states resident in RAM + staging buffers
  std::uint64_t compute_bytes = 0;   // --gpu-mem: compute tier (GPU, or CPU memory); 0 = no limit
  std::uint64_t ssd_free_bytes = 0;  // free bytes over all --ssd directories together
  std::uint64_t ssd_used_bytes = 0;  // bytes the store already holds (resume): not needed again
  std::uint64_t store_extent_bytes = std::uint64_t{4}
                                     << 20;  // the store rounds each tensor up to it
};

// Throughputs for the bound (bytes/s, FLOP/s, parameters/s). Defaults: DESIGN.md's development
// machine (2-core EPYC, virtual disk); the caller replaces what it measured.
struct OffloadRates {
  double ssd_read_bytes_per_s = 1.5e9;
  double ssd_write_bytes_per_s = 3.0e9;
  // Reads and writes at once on the same directories (bytes/s of both together): one SSD shares
  // its bandwidth between them. 0 = not measured (no such term).
  double ssd_mixed_bytes_per_s = 0;
  double cpu_adam_params_per_s = 1.0e9;
  double compute_flops_per_s = 1.0e11;  // CPU fp32 GEMM; set from a measurement
  double pcie_h2d_bytes_per_s = 0;      // 0 = no PCIe (CPU compute tier)
  double pcie_d2h_bytes_per_s = 0;
  // CUDA streaming: the loader's fp32 -> bf16 conversion of the streamed blocks, parameters/s
  // (a CPU memory pass of its own). 0 = not measured (no such term).
  double stream_convert_params_per_s = 0;
};

// SSDs a plan assumes instead of the --ssd directories (--assume-ssd, for hardware not bought
// yet): `count` disks of `bytes_each`, each reading and writing at the given rates. The store
// stripes over its directories, so space and rates add up over the disks.
struct AssumedSsds {
  std::int64_t count = 0;
  std::uint64_t bytes_each = 0;
  double read_bytes_per_s_each = 0, write_bytes_per_s_each = 0;
  std::uint64_t total_bytes() const { return static_cast<std::uint64_t>(count) * bytes_each; }
};
// `rates` with the SSD terms of `ssds`: reads and writes of all disks together; no mixed rate
// (not measured: the bound then takes reads and writes as independent).
OffloadRates with_assumed_ssds(OffloadRates rates, const AssumedSsds& ssds);

// Where a block's kept activations wait for its backward (kept_activations.h), in the order the
// planner prefers them: the compute tier, CPU memory (--cpu-mem), the store.
enum class ActivationTier : int { kCompute = 0, kCpu = 1, kStore = 2 };
const char* activation_tier_name(ActivationTier tier);  // "compute", "cpu", "store"

// What the forwards keep of each block (--activations) and where (--activations-in). The
// library's default is recompute (only the block inputs); the command line's is auto.
struct ActivationRequest {
  enum class Mode { kAuto, kRecompute, kKeepAll, kList };
  Mode mode = Mode::kRecompute;
  std::vector<ActivationSet> sets;  // kList: one per block
  // Every kept activation in this tier (tests, --activations-in), or none: the planner's order.
  std::optional<ActivationTier> tier;
};
// --activations TEXT for a model of `layers` blocks: "auto", "recompute", "keep-all", a list of
// names for every block ("attn,fc", block_activations.h), or blocks and lists
// "0-11:attn,fc;12:all" (blocks not named keep nothing). UsageError naming a bad name or a block
// that does not exist.
ActivationRequest parse_activation_request(const std::string& text, std::int64_t layers);
// --activations-in TEXT: "auto" (none), "compute", "cpu", "store".
std::optional<ActivationTier> parse_activation_tier(const std::string& text);

struct OffloadShape {
  std::int64_t micro_batch = 8;  // B
  std::int64_t seq = 128;        // T
  std::int64_t accum = 1;        // K
  bool grad_clip = false;  // global-norm clipping: every gradient is held until the norm is known
  std::int64_t loss_chunk_rows = 0;  // 0 = default_loss_chunk_rows rule (≤ 64 MiB of fp32 logits)
  bool cuda = false;  // compute tier on a GPU: bf16 compute, PCIe transfers, pinned slots
  std::int64_t commit_every = 1;  // states in CPU memory go to the store every N steps
  // CPU tier, streaming with K > 1 or clipping: drain each micro-batch's block gradients into
  // accumulators on the CPU side (--cpu-mem or the store), as the CUDA tier does when it streams
  // (block_grads_in_cpu), even when the compute budget could hold them. For tests: it runs that
  // path without a GPU. (Both tiers otherwise decide by themselves.)
  bool block_grads_in_cpu = false;
  // Floats per state piece (state_pieces.h): the optimizer stages at most this much of each of a
  // unit's master, m, v at a time. plan_offload_run derives it from the store's extent.
  std::int64_t state_piece_floats = kDefaultStatePieceFloats;
  // Streaming granularity (--stream): 0 = the planner decides (whole blocks wherever two block
  // slots fit, else pieces), 1 = whole blocks only, config.block_piece_count() = pieces.
  std::int64_t pieces_per_block = 0;
  // The store's slots per extent (--store-slots): 0 = the planner decides (two where they fit the
  // SSDs, else one), 1 (updates in place) or 2 (copy-on-write).
  std::int64_t store_slots = 0;
  // What each block's forward keeps (auto: the cost model's choice, activation_plan below).
  ActivationRequest activations;
};

// One line of a memory budget: what it is for and how many bytes.
struct PlanItem {
  std::string what;
  std::uint64_t bytes = 0;
};

struct BoundTerm {
  std::string name;  // "compute", "ssd_read", "ssd_write", "ssd_read_write", "cpu_adam", "pcie_*",
                     // "stream_convert", "compute_then_update" (clipping: see the top)
  double seconds = 0;  // amount per iteration / rate
};

// The activation policy: what each block keeps and where, chosen after every other placement, in
// the room they leave. The cost model (auto): a kept activation saves its recompute's FLOPs
// (block_activations.h) and, in the store, costs its bytes written and read back each
// micro-batch; the candidates (block, activation) go in order of FLOPs saved per byte kept (the
// Fuyou paper's benefit), then (streaming in pieces) the sets that spare a piece's reload, each
// taken when the predicted iteration time (the bound) drops, and keep-all where it predicts
// shorter still: so auto is never predicted slower than recompute.
struct ActivationPlan {
  std::string mode = "recompute";     // "auto", "recompute", "keep-all", "list"
  std::vector<ActivationSet> kept;    // per block
  std::vector<ActivationTier> tiers;  // per block (meaningful where kept)
  // Bytes kept per micro-batch in each tier (the store's read and written again each one).
  std::uint64_t compute_bytes = 0, cpu_bytes = 0, store_bytes = 0;
  double recompute_flops = 0;  // per iteration, what the backwards still recompute
  // auto: the predicted iterations of recompute and keep-all (0: keep-all does not fit, and
  // keep_all_refusal says why), and the best candidate not taken (none: empty).
  double recompute_seconds = 0, keep_all_seconds = 0;
  std::string keep_all_refusal;
  std::string next_best;
  std::int64_t blocks_keeping() const;
};

struct OffloadPlan {
  bool states_in_cpu = false;  // master, m, v held in RAM (still written through to the store)
  // Blocks of compute weights held in the compute tier: all of them, or (when they do not fit)
  // none, the blocks then streaming through stream_slots slots from their fp32 master in the
  // store or in RAM, in the order of use (forward 0 … L-1, backward L-1 … 0).
  std::int64_t resident_blocks = 0;
  std::int64_t stream_slots = 0;
  // Streaming granularity: 1 = whole blocks; block_piece_count() = each block streams as its
  // pieces (model_config.h: one or two matmuls each; GPT-2 4, Llama 5), so the compute tier
  // holds slots and two gradient buffers of the largest piece instead of a block's, and every
  // block's gradients leave it piece by piece to add up on the CPU side. Chosen only where whole
  // blocks do not fit:
  // pieces load each block's weights almost three times per micro-batch instead of twice
  // (3·N_b − N_3 with nothing kept: the recompute reads pieces 0-2; 2·N_b when the activations
  // that need weights are kept) and the same FLOPs as whole blocks.
  std::int64_t pieces_per_block = 1;
  std::int64_t stream_slot_floats = 0;  // what one stream slot holds: a padded block, or a piece
  // CPU tier, when even streamed blocks leave no room: the block inputs (activation checkpoints)
  // go to the store as the forward makes them and come back ahead of the backward.
  bool inputs_in_store = false;
  // CUDA tier, likewise: the block inputs go to pinned CPU memory (counted in --cpu-mem) as the
  // forward makes them and come back ahead of the backward, over PCIe.
  bool inputs_in_cpu = false;
  // CUDA tier, when two stream slots still do not fit: the fp32 gradient accumulators of the
  // embeddings, final norm and head live in CPU memory (counted in --cpu-mem): the loss
  // backward's head gradient slices and each micro-batch's x0 gradient come down and add there.
  bool outside_grads_in_cpu = false;
  // Streaming with accumulation (K > 1) or clipping, on CUDA (or on the CPU tier when its compute
  // budget cannot hold a buffer per block): each block's fp32 gradients are summed over the
  // micro-batches (and kept for the norm) on the CPU side, one accumulator per block; the compute
  // tier keeps only the pool of two block gradient buffers they leave through.
  bool block_grads_in_cpu = false;
  // ... and when those accumulators (4 B per block parameter) do not fit --cpu-mem beside the
  // staging buffers (the states are then in the store too): one store tensor per block, laid out
  // in pieces like the states (state_pieces.h, 4·P bytes apart), which the optimizer thread's drain
  // reads, adds to and writes back piece by piece and its update reads back. RAM then holds one
  // piece read buffer (and, on the CPU tier, two gradient piece buffers; CUDA has its pinned ones).
  bool block_grads_in_store = false;
  std::int64_t grad_block_slots = 0;      // block gradient buffers: 2 (double buffer) or n_layer
  std::int64_t state_slots = 0;           // staging buffers of one state piece (0 if in CPU)
  std::int64_t state_piece_floats = 0;    // P (state_pieces.h), as the store lays the states out
  std::int64_t largest_piece_floats = 0;  // min(P, the largest unit): what a staging slot holds
  std::int64_t pinned_slots = 0;  // CUDA: pinned gradient (fp32) and weight (bf16) slots each
  std::int64_t params = 0;
  std::vector<PlanItem> compute_items, cpu_items, ssd_items;
  std::uint64_t compute_total = 0, cpu_total = 0, ssd_total = 0;
  // The store's slots per extent: 2 (copy-on-write: a crash leaves the last commit) or 1 (updates
  // in place: 12 B per parameter of states plus a spare piece per unit instead of 24, the states
  // and block gradients then always in the store and the embeddings' and ln_f's gradients sealed
  // there each step, so that a crash mid-update is finished by --resume; step_journal.h).
  std::int64_t store_slots = 2;
  double ssd_bytes_per_param = 0;  // ssd_total / params
  // What two slots per extent need: the two-slot plan's total when the planner chose one slot
  // for lack of space, else this layout's with two slots (describe() says it).
  std::uint64_t ssd_two_slot_bytes = 0;

  ActivationPlan activations;

  // Per iteration (one optimizer step of K micro-batches).
  double flops = 0;  // 6·N + 12·L·C·T per token + the recompute's (activations.recompute_flops)
  std::uint64_t ssd_read_bytes = 0, ssd_write_bytes = 0;
  std::uint64_t pcie_h2d_bytes = 0, pcie_d2h_bytes = 0;
  std::vector<BoundTerm> terms;  // every term of the bound
  double bound_seconds = 0;      // max of terms
  std::string binding;           // name of the largest term

  // Human-readable plan (several lines, for --dry-run).
  std::string describe() const;
};

// Optimizer units, in the order the backward finishes their gradients: ln_f, blocks L-1 … 0, then
// the embeddings (wte's gradient is complete only after the embedding backward).
//   unit 0 = embeddings (wte, wpe), unit 1 + l = block l, unit L + 1 = ln_f (weight, bias).
std::int64_t unit_count(const ModelConfig& config);
std::int64_t unit_params(const ModelConfig& config, std::int64_t unit);
// Floats of one state segment of a unit in the store and in staging buffers: params rounded up to
// 1024 (4096 bytes), so master, m and v each start 4096-aligned.
std::int64_t unit_padded_params(const ModelConfig& config, std::int64_t unit);
std::int64_t max_unit_padded_params(const ModelConfig& config);

// Plans a run. Throws UsageError when it does not fit, naming the budget, what it needs, what it
// has, and the flag to change.
OffloadPlan plan_offload(const ModelConfig& config, const OffloadShape& shape,
                         const OffloadBudgets& budgets, const OffloadRates& rates = {});

// The largest micro-batch B <= `limit` whose plan fits the budgets (shape.micro_batch ignored),
// 0 when not even B = 1 does. Plans take more memory with B in every tier, so B is searched
// by halving.
std::int64_t largest_micro_batch(const ModelConfig& config, OffloadShape shape,
                                 const OffloadBudgets& budgets, const OffloadRates& rates = {},
                                 std::int64_t limit = 4096);

}  // namespace sparsetrain::fuyou
