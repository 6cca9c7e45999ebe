// plan_offload (see offload_plan.h).
#include "fuyou/offload/offload_plan.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "common/units.h"

namespace sparsetrain::fuyou {

namespace {

constexpr std::uint64_t kF32 = 4;
constexpr std::uint64_t kBF16 = 2;
constexpr std::int64_t kPadFloats = 1024;         // 4096 bytes
constexpr std::int64_t kLogitBytes = 64ll << 20;  // gpt_model.cpp's default chunk rule

std::uint64_t round_up(std::uint64_t x, std::uint64_t to) { return (x + to - 1) / to * to; }

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

void refuse(const std::string& budget, std::uint64_t need, std::uint64_t have,
            const std::vector<PlanItem>& items, const std::string& hint) {
  auto exact = [](std::uint64_t b) {
    return common::format_bytes(static_cast<double>(b)) + " = " + std::to_string(b) + " B";
  };
  throw common::UsageError(budget + " does not fit: needs " + exact(need) + " (" +
                               list_items(items) + ") but has " + exact(have),
                           hint);
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

OffloadPlan plan_offload(const ModelConfig& config, const OffloadShape& shape,
                         const OffloadBudgets& budgets, const OffloadRates& rates) {
  config.validate();
  OffloadPlan plan;
  const auto u64 = [](std::int64_t x) { return static_cast<std::uint64_t>(x); };
  const std::int64_t c = config.n_embd, l = config.n_layer;
  plan.params = config.param_count();
  std::int64_t padded = 0;
  for (std::int64_t u = 0; u < unit_count(config); ++u) padded += unit_padded_params(config, u);
  const std::uint64_t state_bytes = 3 * kF32 * u64(padded);  // master + m + v
  if (shape.state_piece_floats < kPadFloats || shape.state_piece_floats % kPadFloats != 0) {
    throw common::UsageError("state piece of " + std::to_string(shape.state_piece_floats) +
                                 " floats is not a positive multiple of 1024",
                             "leave the state piece size at its default");
  }
  plan.state_piece_floats = shape.state_piece_floats;
  // The largest piece any unit has: a staging slot holds its master, m and v.
  plan.largest_piece_floats = std::min(max_unit_padded_params(config), shape.state_piece_floats);
  const std::uint64_t staging_bytes = 3 * kF32 * u64(plan.largest_piece_floats);

  const std::uint64_t block_params = u64(config.block_param_count());
  const std::uint64_t block_padded = u64(unit_padded_params(config, 1));
  const std::uint64_t outside_params = u64(plan.params) - u64(l) * block_params;  // wte, wpe, ln_f

  // Compute tier (decided first: streaming on CUDA adds CPU buffers; refused after the CPU check):
  // every block's compute weights when they fit; else the embeddings and ln_f stay and the blocks
  // stream through a few slots (streamed_items below). Plus gradient buffers, block inputs, one
  // block's recompute, one logits chunk.
  plan.resident_blocks = l;
  const std::int64_t tokens = shape.micro_batch * shape.seq;
  // Every gradient must stay until the norm is known (clipping), or accumulate over K
  // micro-batches.
  plan.grad_block_slots = (shape.grad_clip || shape.accum > 1) ? l : std::min<std::int64_t>(2, l);
  const std::int64_t rows = std::min<std::int64_t>(
      tokens, shape.loss_chunk_rows > 0
                  ? shape.loss_chunk_rows
                  : std::max<std::int64_t>(1, kLogitBytes / (config.vocab * 4)));
  const std::uint64_t act = shape.cuda ? kBF16 : kF32;  // compute precision
  plan.compute_items = {
      {shape.cuda ? "bf16 compute weights" : "fp32 compute weights", act * u64(plan.params)},
      {"embedding + ln_f gradient accumulators", kF32 * u64(unit_params(config, 0) + 2 * c)},
      {std::to_string(plan.grad_block_slots) + " block gradient buffers",
       kF32 * u64(plan.grad_block_slots * config.block_param_count())},
      {"block inputs (L + 1)", act * u64((l + 1) * tokens * c)},
      // Estimate of one block's recompute under autograd: ~24 activations of [B, T, C] (LN, qkv,
      // attention, 4C MLP, their gradients) plus the attention matrix and its gradient.
      {"one block's recompute (estimate)",
       act * u64(24 * tokens * c + 2 * shape.micro_batch * config.n_head * shape.seq * shape.seq)},
      {"logits chunk + its gradient", kF32 * u64(3 * rows * config.vocab)}};
  plan.compute_total = sum_items(plan.compute_items);
  if (budgets.compute_bytes > 0 && plan.compute_total > budgets.compute_bytes) {
    // Stream the blocks: each slot holds one block's compute weights (padded as in the store); as
    // many slots as fit, at least two (one computing, one loading), at most one per block.
    const std::uint64_t slot_bytes = act * block_padded;
    // The CPU tier keeps a gradient buffer per block in the compute tier (accumulation or
    // clipping) while the smallest streaming layout still fits beside them: two slots, the block
    // inputs through the store (3 kept instead of L + 1). With L <= 2 the pool of two saves
    // nothing.
    const std::uint64_t smallest_with_buffers =
        sum_items(plan.compute_items) - plan.compute_items[0].bytes + act * outside_params +
        2 * slot_bytes - plan.compute_items[3].bytes + 3 * act * u64(tokens * c);
    if (shape.cuda || shape.block_grads_in_cpu ||
        (l > 2 && plan.grad_block_slots == l && smallest_with_buffers > budgets.compute_bytes)) {
      // The GPU cannot hold an accumulator per block either: each block's gradients leave it right
      // after that block's backward, through a pool of two fp32 buffers, and (accumulation or
      // clipping) add up on the CPU side, in --cpu-mem or the store (cpu items below). The CPU
      // tier does the same when its compute budget cannot hold them (or when asked, for tests).
      plan.grad_block_slots = 2;
      plan.block_grads_in_cpu = shape.grad_clip || shape.accum > 1;
      plan.compute_items[2] = {std::to_string(plan.grad_block_slots) + " block gradient buffers",
                               kF32 * u64(plan.grad_block_slots) * block_params};
    }
    const std::uint64_t fixed =
        sum_items(plan.compute_items) - plan.compute_items[0].bytes + act * outside_params;
    std::uint64_t room = budgets.compute_bytes > fixed ? budgets.compute_bytes - fixed : 0;
    if (room < 2 * slot_bytes) {
      // Then the block inputs leave the compute tier too: it keeps two input slots and the
      // running activation instead of L + 1 inputs. CPU tier: through the store (input_stash.h);
      // CUDA: in pinned CPU memory (cuda_transfer.h: CudaInputStash; cpu items below).
      const std::uint64_t kept = 3 * act * u64(tokens * c);
      std::uint64_t& inputs = plan.compute_items[3].bytes;
      const std::uint64_t fixed_without = fixed - inputs + kept;
      room = budgets.compute_bytes > fixed_without ? budgets.compute_bytes - fixed_without : 0;
      inputs = kept;
      plan.compute_items[3].what = "2 block-input slots + the running activation";
      (shape.cuda ? plan.inputs_in_cpu : plan.inputs_in_store) = true;
    }
    plan.stream_slots = std::max<std::int64_t>(
        2, std::min<std::int64_t>(l, static_cast<std::int64_t>(room / slot_bytes)));
    plan.resident_blocks = 0;
    plan.compute_items[0] = {shape.cuda ? "bf16 embeddings + ln_f" : "fp32 embeddings + ln_f",
                             act * outside_params};
    plan.compute_items.insert(
        plan.compute_items.begin() + 1,
        {std::to_string(plan.stream_slots) + " streamed block slots",
         u64(plan.stream_slots) * slot_bytes});
    plan.compute_total = sum_items(plan.compute_items);
  }
  const bool cuda_stream = shape.cuda && plan.stream_slots > 0;

  // CPU budget: the states when they fit, else two staging slots of one state piece each (one
  // updating, one loading or writing back).
  // The CUDA tier's pinned slots are needed either way: the states stay in RAM only beside them.
  // Streaming on CUDA adds two pinned bf16 buffers of one state piece (fp32 master -> bf16 ->
  // upload, piece by piece), the block gradient accumulators when they live on the CPU, and
  // (states in the store) one fp32 piece buffer the loader reads the master into.
  const std::uint64_t pinned_bytes =
      shape.cuda ? 2 * (kF32 + kBF16) * u64(plan.largest_piece_floats) : 0;
  std::vector<PlanItem> stream_cpu_items;
  // A block's largest state piece: the stream's loader converts and uploads a block piece by
  // piece, and block gradients in the store go through buffers of one piece.
  const std::int64_t block_piece_floats =
      std::min<std::int64_t>(shape.state_piece_floats, static_cast<std::int64_t>(block_padded));
  if (cuda_stream) {
    stream_cpu_items.push_back(
        {"2 pinned bf16 piece upload buffers", 2 * kBF16 * u64(block_piece_floats)});
  }
  const PlanItem accumulators{std::to_string(l) + " fp32 block gradient accumulators",
                              kF32 * u64(l) * block_params};
  if (plan.block_grads_in_cpu) stream_cpu_items.push_back(accumulators);
  if (cuda_stream) {
    if (plan.inputs_in_cpu) {
      stream_cpu_items.push_back({std::to_string(l) + " pinned bf16 block inputs",
                                  u64(l) * u64(common::io::align_up(kBF16 * u64(tokens * c)))});
    }
  }
  plan.states_in_cpu =
      state_bytes + pinned_bytes + sum_items(stream_cpu_items) <= budgets.cpu_bytes;
  if (plan.states_in_cpu) {
    plan.state_slots = 0;
    plan.cpu_items.push_back({"fp32 master + Adam m, v", state_bytes});
  } else {
    plan.state_slots = 2;
    plan.cpu_items.push_back(
        {"2 staging slots of one state piece's master + m + v", 2 * staging_bytes});
  }
  if (cuda_stream && !plan.states_in_cpu) {  // the loader reads a piece of master from the store
    plan.cpu_items.push_back({"fp32 piece read buffer", kF32 * u64(block_piece_floats)});
  }
  if (shape.cuda) {
    // One state piece each: the weights of one piece go up while the next piece updates. The
    // gradient downloads are synchronous, so the second gradient slot is spare (4 B per float of a
    // piece) unless the block gradients add up in the store (the drain then downloads into one
    // while the other's piece is written, and the update reads ahead into the other); dropping it
    // would move the GPU tests' budgets, so it waits for a GPU session.
    plan.pinned_slots = 2;
    const std::uint64_t piece_floats = u64(plan.largest_piece_floats);  // they go piece by piece
    plan.cpu_items.push_back({"2 pinned fp32 gradient slots", 2 * kF32 * piece_floats});
    plan.cpu_items.push_back({"2 pinned bf16 weight slots", 2 * kBF16 * piece_floats});
  }
  plan.cpu_items.insert(plan.cpu_items.end(), stream_cpu_items.begin(), stream_cpu_items.end());
  plan.cpu_total = sum_items(plan.cpu_items);
  // The block gradient accumulators do not fit beside the staging buffers either: they go to the
  // store (when that needs less RAM: not for a model of very few, small blocks), and RAM keeps one
  // gradient piece read buffer (the drain adds a stored piece to the incoming one) and, on the
  // CPU tier, two gradient piece buffers (CUDA: its pinned gradient slots). They stay in RAM
  // before the states do: they are touched every micro-batch. (With K = 1, the states in RAM and
  // the accumulators in the store would read less from the store, 4 B per parameter a step
  // against 16; not planned: the states are 3x the accumulators' RAM.)
  const std::uint64_t grad_piece_bytes = kF32 * u64(block_piece_floats);
  if (plan.cpu_total > budgets.cpu_bytes && plan.block_grads_in_cpu && !plan.states_in_cpu) {
    std::vector<PlanItem> items;
    for (const PlanItem& item : plan.cpu_items) {
      if (item.what != accumulators.what) items.push_back(item);
    }
    if (!shape.cuda) items.push_back({"2 fp32 gradient piece buffers", 2 * grad_piece_bytes});
    items.push_back({"fp32 gradient piece read buffer", grad_piece_bytes});
    if (sum_items(items) < plan.cpu_total) {
      plan.block_grads_in_store = true;
      plan.cpu_items = std::move(items);
      plan.cpu_total = sum_items(plan.cpu_items);
    }
  }
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
               (shape.cuda ? " (the CUDA tier streams the blocks through two slots at least, "
                             "beside two block-input slots)"
                           : ""));
  }

  // SSD: one store tensor per unit (its state pieces' [master | m | v], state_pieces.h;
  // copy-on-write: two slots per extent).
  std::uint64_t store_bytes = 0;
  const std::uint64_t extent = std::max<std::uint64_t>(4096, budgets.store_extent_bytes);
  for (std::int64_t u = 0; u < unit_count(config); ++u) {
    store_bytes += 2 * round_up(3 * kF32 * u64(unit_padded_params(config, u)), extent);
  }
  store_bytes += 2 * extent;  // train.state
  plan.ssd_items.push_back({"store: master + m + v, two slots per extent", store_bytes});
  const std::uint64_t input_bytes = kF32 * u64(tokens * c);  // one block input
  if (plan.inputs_in_store) {
    plan.ssd_items.push_back({"store: " + std::to_string(l) + " block inputs, two slots per extent",
                              u64(l) * 2 * round_up(input_bytes, extent)});
  }
  if (plan.block_grads_in_store) {
    plan.ssd_items.push_back(
        {"store: " + std::to_string(l) + " block gradient accumulators, two slots per extent",
         u64(l) * 2 * round_up(kF32 * block_padded, extent)});
  }
  plan.ssd_total = sum_items(plan.ssd_items);
  const std::uint64_t ssd_have = budgets.ssd_free_bytes + budgets.ssd_used_bytes;
  if (plan.ssd_total > ssd_have) {
    refuse("--ssd", plan.ssd_total, ssd_have, plan.ssd_items,
           "free space on the --ssd directories or add more of them");
  }

  // Per iteration.
  plan.flops =
      config.train_flops_per_token_recompute(shape.seq) * static_cast<double>(tokens * shape.accum);
  plan.ssd_read_bytes = plan.states_in_cpu ? 0 : state_bytes;
  if (plan.stream_slots > 0 && !plan.states_in_cpu) {
    // Streamed blocks read their fp32 master from the store twice per micro-batch (forward and
    // backward).
    plan.ssd_read_bytes += u64(2 * shape.accum * l) * kF32 * u64(unit_padded_params(config, 1));
  }
  // The store is the checkpoint: states in the store are written every step, states in RAM on
  // commit steps (every commit_every-th).
  plan.ssd_write_bytes =
      plan.states_in_cpu ? state_bytes / u64(std::max<std::int64_t>(1, shape.commit_every))
                         : state_bytes;
  if (plan.inputs_in_store) {  // each micro-batch writes its L block inputs and reads them back
    plan.ssd_read_bytes += u64(shape.accum * l) * input_bytes;
    plan.ssd_write_bytes += u64(shape.accum * l) * input_bytes;
  }
  if (plan.block_grads_in_store) {
    // Each micro-batch's drain writes every block's accumulator (after reading it back from
    // micro-batch 1 on); the update reads it once: K writes and K reads of each per step.
    plan.ssd_read_bytes += u64(shape.accum * l) * kF32 * block_padded;
    plan.ssd_write_bytes += u64(shape.accum * l) * kF32 * block_padded;
  }
  if (cuda_stream) {
    // Up: the streamed blocks' bf16 weights for every forward and every backward (recompute) of
    // every micro-batch, the other units' updated weights once, the token ids and targets. Down:
    // the other units' fp32 gradients once; each block's once per step, or once per micro-batch
    // when they add up in CPU memory.
    plan.pcie_h2d_bytes = kBF16 * outside_params + u64(2 * shape.accum * l) * kBF16 * block_params +
                          2 * 8 * u64(tokens * shape.accum);
    plan.pcie_d2h_bytes =
        kF32 * outside_params +
        u64((plan.block_grads_in_cpu ? shape.accum : 1) * l) * kF32 * block_params;
    if (plan.inputs_in_cpu) {  // each micro-batch's L block inputs go down and come back up
      plan.pcie_d2h_bytes += u64(shape.accum * l) * kBF16 * u64(tokens * c);
      plan.pcie_h2d_bytes += u64(shape.accum * l) * kBF16 * u64(tokens * c);
    }
  } else if (shape.cuda) {
    // Down: every fp32 gradient once per step. Up: every bf16 weight once per step, plus the
    // micro-batches' token ids and targets (int64).
    plan.pcie_d2h_bytes = kF32 * u64(plan.params);
    plan.pcie_h2d_bytes = kBF16 * u64(plan.params) + 2 * 8 * u64(tokens * shape.accum);
  }
  const double params = static_cast<double>(plan.params);
  plan.terms.push_back({"compute", plan.flops / rates.compute_flops_per_s});
  plan.terms.push_back(
      {"ssd_read", static_cast<double>(plan.ssd_read_bytes) / rates.ssd_read_bytes_per_s});
  plan.terms.push_back(
      {"ssd_write", static_cast<double>(plan.ssd_write_bytes) / rates.ssd_write_bytes_per_s});
  if (rates.ssd_mixed_bytes_per_s > 0 && plan.ssd_read_bytes > 0) {
    plan.terms.push_back(
        {"ssd_read_write",
         static_cast<double>(plan.ssd_read_bytes + plan.ssd_write_bytes) / rates.ssd_mixed_bytes_per_s});
  }
  plan.terms.push_back({"cpu_adam", params / rates.cpu_adam_params_per_s});
  if (rates.pcie_h2d_bytes_per_s > 0) {
    plan.terms.push_back(
        {"pcie_h2d", static_cast<double>(plan.pcie_h2d_bytes) / rates.pcie_h2d_bytes_per_s});
  }
  if (rates.pcie_d2h_bytes_per_s > 0) {
    plan.terms.push_back(
        {"pcie_d2h", static_cast<double>(plan.pcie_d2h_bytes) / rates.pcie_d2h_bytes_per_s});
  }
  if (cuda_stream && rates.stream_convert_params_per_s > 0) {
    // Every streamed load converts one block: forward and backward of every micro-batch.
    plan.terms.push_back({"stream_convert", static_cast<double>(2 * shape.accum * l) *
                                                static_cast<double>(block_params) /
                                                rates.stream_convert_params_per_s});
  }
  if (shape.grad_clip) {
    // Clipping: no update can start before the global norm, i.e. before the last backward ends.
    // So the step is at least the compute (or the streamed blocks' reads, which feed it) followed
    // by what only the updates do: read the states the staging slots could not prefetch (two
    // pieces, fewer bytes than two slots) and the stored block gradients, write the states back,
    // run AdamW. A sum, not a max: clipping serializes them.
    const std::uint64_t stream_reads =
        plan.stream_slots > 0 && !plan.states_in_cpu
            ? u64(2 * shape.accum * l) * kF32 * block_padded
            : 0;
    const double before = std::max(plan.flops / rates.compute_flops_per_s,
                                   static_cast<double>(stream_reads) / rates.ssd_read_bytes_per_s);
    std::uint64_t reads = plan.states_in_cpu ? 0 : state_bytes - std::min(state_bytes, 2 * staging_bytes);
    if (plan.block_grads_in_store) reads += u64(l) * kF32 * block_padded;
    const std::uint64_t writes =
        plan.states_in_cpu ? state_bytes / u64(std::max<std::int64_t>(1, shape.commit_every))
                           : state_bytes;
    // Reads and writes at once: at least each alone, and the mixed rate's time unless doing them
    // one after the other is faster (the mixed rate is measured half and half).
    const double read_s = static_cast<double>(reads) / rates.ssd_read_bytes_per_s;
    const double write_s = static_cast<double>(writes) / rates.ssd_write_bytes_per_s;
    double io = std::max(read_s, write_s);
    if (rates.ssd_mixed_bytes_per_s > 0 && reads > 0) {
      io = std::max(io, std::min(read_s + write_s, static_cast<double>(reads + writes) /
                                                       rates.ssd_mixed_bytes_per_s));
    }
    plan.terms.push_back(
        {"compute_then_update", before + std::max(io, params / rates.cpu_adam_params_per_s)});
  }
  for (const BoundTerm& term : plan.terms) {
    if (term.seconds > plan.bound_seconds) {
      plan.bound_seconds = term.seconds;
      plan.binding = term.name;
    }
  }
  return plan;
}

std::string OffloadPlan::describe() const {
  std::ostringstream out;
  auto bytes = [](std::uint64_t b) { return common::format_bytes(static_cast<double>(b)); };
  out << "states        fp32 master + Adam m, v: "
      << (states_in_cpu ? "in CPU memory (written to the store on commit steps)"
                        : "in the SSD store, " + std::to_string(state_slots) +
                              " staging slots of a piece of at most " +
                              bytes(4 * static_cast<std::uint64_t>(largest_piece_floats)) +
                              " of each")
      << "\n";
  if (stream_slots > 0) {
    out << "blocks        streamed through " << stream_slots
        << " compute-tier slots from their fp32 master ("
        << (states_in_cpu ? "in RAM" : "read from the store")
        << "), before each forward and each backward (recompute)"
        << (pinned_slots > 0 ? ", converted to bf16 in pinned memory and uploaded on a copy stream"
                             : "")
        << (block_grads_in_store  ? "; block gradients add up in the store"
            : block_grads_in_cpu ? "; block gradients add up in CPU memory"
                                 : "")
        << (inputs_in_store ? "; block inputs go through the store" : "")
        << (inputs_in_cpu ? "; block inputs go to pinned CPU memory and back" : "") << "\n";
  }
  out << "compute tier  " << bytes(compute_total) << ": " << list_items(compute_items) << "\n";
  out << "cpu           " << bytes(cpu_total) << ": " << list_items(cpu_items) << "\n";
  out << "ssd           " << bytes(ssd_total) << ": " << list_items(ssd_items) << "\n";
  out << "per iteration ssd read " << bytes(ssd_read_bytes) << ", ssd write "
      << bytes(ssd_write_bytes) << ", pcie h2d " << bytes(pcie_h2d_bytes) << ", d2h "
      << bytes(pcie_d2h_bytes) << ", ";
  char flops_text[64];
  std::snprintf(flops_text, sizeof flops_text, "%.3g FLOP (8N + 16LCT per token)\n", flops);
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
