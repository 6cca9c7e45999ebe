// plan_offload against hand-worked numbers for a small GPT: placement, refusals with the numbers
// that do not fit, bytes per iteration and the binding term of the lower bound.
#include "fuyou/offload/offload_plan.h"

#include <doctest/doctest.h>

#include <string>

#include "common/error.h"
#include "fuyou/model/model_config.h"
#include "fuyou/offload/offload_rates.h"

using namespace sparsetrain::fuyou;

namespace {

// tiny: L = 2, C = 64, H = 4, V = 256, T_max = 128.
//   block: 12·C² + 13·C = 49,984; embeddings (256 + 128)·64 = 24,576; ln_f 128; N = 124,672.
//   padded to 1024 floats: 24,576 + 2 · 50,176 + 1,024 = 125,952 -> states 12 B · that = 1,511,424
//   B; one staging slot 12 · 50,176 = 602,112 B.
constexpr std::uint64_t kTinyStateBytes = 1511424;
constexpr std::uint64_t kTinySlotBytes = 602112;

// B = 4, T = 32, K = 2.
OffloadShape small_shape() {
  OffloadShape s;
  s.micro_batch = 4;
  s.seq = 32;
  s.accum = 2;
  return s;
}

OffloadBudgets roomy() {
  OffloadBudgets b;
  b.cpu_bytes = std::uint64_t{1} << 30;
  b.compute_bytes = 0;
  b.ssd_free_bytes = std::uint64_t{1} << 40;
  return b;
}

std::string usage_message(const ModelConfig& c, const OffloadShape& s, const OffloadBudgets& b) {
  try {
    plan_offload(c, s, b);
  } catch (const sparsetrain::common::UsageError& e) {
    return std::string(e.what()) + "\nhint: " + e.hint();
  }
  return "";
}

}  // namespace

TEST_CASE("unit sizes of the tiny GPT match the hand count") {
  const ModelConfig c = model_config_from_name("tiny");
  CHECK(unit_count(c) == 4);
  CHECK(unit_params(c, 0) == 24576);
  CHECK(unit_params(c, 1) == 49984);
  CHECK(unit_params(c, 3) == 128);
  CHECK(unit_params(c, 0) + 2 * unit_params(c, 1) + unit_params(c, 3) == c.param_count());
  CHECK(unit_padded_params(c, 1) == 50176);
  CHECK(unit_padded_params(c, 3) == 1024);
  CHECK(max_unit_padded_params(c) == 50176);
}

TEST_CASE("states go to the CPU budget exactly when master, m and v fit in it") {
  const ModelConfig c = model_config_from_name("tiny");
  OffloadBudgets b = roomy();
  b.cpu_bytes = kTinyStateBytes;
  OffloadPlan fits = plan_offload(c, {}, b);
  CHECK(fits.states_in_cpu);
  CHECK(fits.state_slots == 0);
  CHECK(fits.ssd_read_bytes == 0);
  CHECK(fits.ssd_write_bytes == kTinyStateBytes);  // written through: the store is the checkpoint
  CHECK(fits.cpu_total == kTinyStateBytes);

  b.cpu_bytes = kTinyStateBytes - 1;
  OffloadPlan spills = plan_offload(c, {}, b);
  CHECK_FALSE(spills.states_in_cpu);
  CHECK(spills.state_slots == 2);
  CHECK(spills.cpu_total == 2 * kTinySlotBytes);
  CHECK(spills.ssd_read_bytes == kTinyStateBytes);
  CHECK(spills.ssd_write_bytes == kTinyStateBytes);
}

TEST_CASE("a CPU budget below two staging slots is refused with the numbers") {
  const ModelConfig c = model_config_from_name("tiny");
  OffloadBudgets b = roomy();
  b.cpu_bytes = 2 * kTinySlotBytes - 1;
  const std::string message = usage_message(c, {}, b);
  INFO(message);
  CHECK(message.find("--cpu-mem") != std::string::npos);
  CHECK(message.find(std::to_string(2 * kTinySlotBytes) + " B") != std::string::npos);
  CHECK(message.find(std::to_string(2 * kTinySlotBytes - 1) + " B") != std::string::npos);
}

TEST_CASE("the SSD must hold two slots of every unit's extents plus train.state") {
  const ModelConfig c = model_config_from_name("tiny");
  OffloadBudgets b = roomy();
  OffloadShape two_slots;
  two_slots.store_slots = 2;
  // 4 units of <= 4 MiB each and train.state: 5 extents of 4 MiB, twice (copy-on-write).
  const std::uint64_t need = 2 * 5 * (std::uint64_t{4} << 20);
  b.ssd_free_bytes = need;
  CHECK(plan_offload(c, two_slots, b).ssd_total == need);
  b.ssd_free_bytes = need - 1;
  const std::string message = usage_message(c, two_slots, b);
  INFO(message);
  CHECK(message.find("--ssd") != std::string::npos);
  CHECK(message.find(std::to_string(need) + " B") != std::string::npos);
  b.ssd_used_bytes = 1;  // a resumed store already holds its space
  CHECK(plan_offload(c, two_slots, b).ssd_total == need);
}

TEST_CASE("a compute tier too small for the weights is refused, naming --gpu-mem") {
  const ModelConfig c = model_config_from_name("tiny");
  OffloadBudgets b = roomy();
  b.compute_bytes = 4 * static_cast<std::uint64_t>(c.param_count());  // weights alone, nothing else
  OffloadShape whole;
  whole.pieces_per_block = 1;
  const std::string message = usage_message(c, whole, b);
  INFO(message);
  CHECK(message.find("--gpu-mem") != std::string::npos);
  // The CPU tier would stream the blocks through two slots, and even that does not fit.
  CHECK(message.find("2 streamed block slots 392 KiB") != std::string::npos);  // 2 · 50,176 floats
  // Left to choose, it streams pieces (4 · 64² + 6 · 64 = 16,768 floats): still too large.
  const std::string pieces = usage_message(c, {}, b);
  INFO(pieces);
  CHECK(pieces.find("2 streamed block-piece slots 131 KiB") != std::string::npos);
  OffloadShape cuda;
  cuda.cuda = true;
  cuda.pieces_per_block = 1;
  const std::string on_gpu = usage_message(c, cuda, b);
  INFO(on_gpu);
  // The CUDA tier streams too, through 2 bf16 slots (2 · 2 · 50,176 B), and that does not fit.
  CHECK(on_gpu.find("2 streamed block slots 196 KiB") != std::string::npos);
  CHECK(on_gpu.find("bf16 embeddings + ln_f") != std::string::npos);
  CHECK(on_gpu.find("beside two block-input slots") != std::string::npos);
}

TEST_CASE("weights that do not fit stream through as many block slots as the budget holds") {
  const ModelConfig c = model_config_from_name("custom:L=8,C=64,H=4,V=256,T=64");
  OffloadShape s;
  OffloadBudgets b = roomy();
  const OffloadPlan all = plan_offload(c, s, b);
  REQUIRE(all.stream_slots == 0);
  CHECK(all.resident_blocks == 8);
  // Everything but the 8 blocks (4 · 8 · 49,984 B), plus room for 5 padded block slots.
  const std::uint64_t blocks = 4ull * 8 * 49984, slot = 4ull * 50176;
  b.compute_bytes = all.compute_total - blocks + 5 * slot + 100;
  const OffloadPlan five = plan_offload(c, s, b);
  CHECK(five.stream_slots == 5);
  CHECK(five.resident_blocks == 0);
  CHECK(five.compute_total <= b.compute_bytes);
  // States in the store: each step reads every block's fp32 master twice more (forward, backward).
  b.cpu_bytes = 2 * 12 * 50176;
  const OffloadPlan store = plan_offload(c, s, b);
  std::uint64_t padded = 20480 + 8 * 50176 + 1024;  // wte + wpe 20,480; ln_f 128 -> 1,024
  CHECK(store.ssd_read_bytes == 12 * padded + 2 * 8 * slot);
}

TEST_CASE("block gradient buffers: a pool of two only without clipping and accumulation") {
  const ModelConfig c = model_config_from_name("custom:L=6,C=64,H=4,V=256,T=64");
  OffloadShape s;
  CHECK(plan_offload(c, s, roomy()).grad_block_slots == 2);
  s.accum = 2;
  CHECK(plan_offload(c, s, roomy()).grad_block_slots == 6);
  s.accum = 1;
  s.grad_clip = true;
  CHECK(plan_offload(c, s, roomy()).grad_block_slots == 6);
}

TEST_CASE("the lower bound is the largest term and names it") {
  const ModelConfig c = model_config_from_name("tiny");
  OffloadShape s = small_shape();
  OffloadBudgets b = roomy();
  b.cpu_bytes = 0;  // states in the store
  // FLOPs: 6·N' + 12·L·C·T + the recompute L·(16·C² + 4·C·T) per token (block_activations.h),
  // N' = N - wpe = 124,672 - 8,192 = 116,480: 698,880 + 49,152 + 2 · (65,536 + 8,192) = 895,488
  // per token, × 4·32·2 = 256 tokens = 229,244,928.
  OffloadRates r;
  r.compute_flops_per_s = 1e12;
  r.ssd_read_bytes_per_s = 1e6;  // 1.511424 s: binds
  r.ssd_write_bytes_per_s = 1e9;
  r.cpu_adam_params_per_s = 1e9;
  b.cpu_bytes = 2 * kTinySlotBytes;
  OffloadPlan p = plan_offload(c, s, b, r);
  CHECK(p.flops == doctest::Approx(229244928.0));
  CHECK(p.binding == "ssd_read");
  CHECK(p.bound_seconds == doctest::Approx(1.511424));
  r.compute_flops_per_s = 1e8;  // 2.29 s: compute binds
  p = plan_offload(c, s, b, r);
  CHECK(p.binding == "compute");
  CHECK(p.bound_seconds == doctest::Approx(2.29244928));
  r.compute_flops_per_s = 1e12;
  r.cpu_adam_params_per_s = 1e4;  // 124,672 params: 12.4672 s
  p = plan_offload(c, s, b, r);
  CHECK(p.binding == "cpu_adam");
  CHECK(p.bound_seconds == doctest::Approx(12.4672));
  CHECK(p.describe().find("bound by cpu_adam") != std::string::npos);
  // Reads and writes at once on one disk: the measured mixed rate adds a term.
  r.cpu_adam_params_per_s = 1e9;
  r.ssd_read_bytes_per_s = 1e9;
  r.ssd_mixed_bytes_per_s = 1e6;
  p = plan_offload(c, s, b, r);
  CHECK(p.binding == "ssd_read_write");
  CHECK(p.bound_seconds ==
        doctest::Approx(static_cast<double>(p.ssd_read_bytes + p.ssd_write_bytes) / 1e6));
}

TEST_CASE("with clipping the bound adds the updates' own work to the compute") {
  const ModelConfig c = model_config_from_name("tiny");
  OffloadShape s = small_shape();
  OffloadBudgets b = roomy();
  b.cpu_bytes = 2 * kTinySlotBytes;  // states in the store
  OffloadRates r;
  r.compute_flops_per_s = 1e8;  // 2.29244928 s (the previous test's FLOPs)
  r.ssd_read_bytes_per_s = 1e9;
  r.ssd_write_bytes_per_s = 1e9;
  r.cpu_adam_params_per_s = 1e9;
  OffloadPlan p = plan_offload(c, s, b, r);
  CHECK(p.binding == "compute");
  for (const BoundTerm& term : p.terms) CHECK(term.name != "compute_then_update");
  s.grad_clip = true;
  p = plan_offload(c, s, b, r);
  // After the norm: read what two staging slots could not prefetch (1,511,424 - 2 · 602,112 =
  // 307,200 B), write all 1,511,424 B back (the larger at 1 GB/s both ways), AdamW 124,672
  // parameters at 1e9/s (less): 1.511424 ms after the compute.
  CHECK(p.binding == "compute_then_update");
  CHECK(p.bound_seconds == doctest::Approx(2.29244928 + 0.001511424));
  // Slow AdamW instead: it is what follows the compute.
  r.cpu_adam_params_per_s = 1e5;
  p = plan_offload(c, s, b, r);
  CHECK(p.bound_seconds == doctest::Approx(2.29244928 + 1.24672));
  // A slow mixed rate (1 MB/s): reads then writes one after the other (1.818624 ms) is the
  // least the updates' I/O can take, not (R + W) / mixed.
  r.cpu_adam_params_per_s = 1e9;
  r.ssd_mixed_bytes_per_s = 1e6;
  p = plan_offload(c, s, b, r);
  bool found = false;
  for (const BoundTerm& term : p.terms) {
    if (term.name != "compute_then_update") continue;
    found = true;
    CHECK(term.seconds == doctest::Approx(2.29244928 + 0.001818624));
  }
  CHECK(found);
}

TEST_CASE("the CUDA tier: bf16 weights on the GPU, pinned slots in the CPU budget, PCIe bytes") {
  const ModelConfig c = model_config_from_name("tiny");  // N = 124,672; largest unit a block
  OffloadShape s = small_shape();
  s.cuda = true;
  OffloadBudgets b = roomy();
  OffloadRates r;
  r.pcie_h2d_bytes_per_s = 1e6;  // slow on purpose: 249,344 + 4,096 bytes -> 0.25344 s
  r.pcie_d2h_bytes_per_s = 1e9;
  const OffloadPlan p = plan_offload(c, s, b, r);
  // Down: fp32 gradients 4·N; up: bf16 weights 2·N + int64 tokens and targets of 2·128 positions.
  CHECK(p.pcie_d2h_bytes == 4 * 124672ull);
  CHECK(p.pcie_h2d_bytes == 2 * 124672ull + 2 * 8 * 256ull);
  CHECK(p.binding == "pcie_h2d");
  CHECK(p.bound_seconds == doctest::Approx(0.25344));
  CHECK(p.pinned_slots == 2);
  // The compute tier holds bf16 weights: 2 bytes per parameter.
  REQUIRE(!p.compute_items.empty());
  CHECK(p.compute_items[0].what == "bf16 compute weights");
  CHECK(p.compute_items[0].bytes == 2 * 124672ull);
  // Pinned slots: 2 × fp32 and 2 × bf16 of the largest unit (a block: 49,984 floats, padded to
  // 50,176).
  bool fp32_slots = false, bf16_slots = false;
  for (const PlanItem& item : p.cpu_items) {
    fp32_slots |= item.what == "2 pinned fp32 gradient slots" && item.bytes == 2 * 4 * 50176ull;
    bf16_slots |= item.what == "2 pinned bf16 weight slots" && item.bytes == 2 * 2 * 50176ull;
  }
  CHECK(fp32_slots);
  CHECK(bf16_slots);
}

TEST_CASE("when streamed blocks leave no room the block inputs go to the store") {
  const ModelConfig c = model_config_from_name("custom:L=8,C=64,H=4,V=256,T=64");
  OffloadShape s;  // B = 8, T = 128: one input is 8 · 128 · 64 · 4 = 256 KiB
  OffloadBudgets b = roomy();
  const OffloadPlan all = plan_offload(c, s, b);
  const std::uint64_t blocks = 4ull * 8 * 49984, slot = 4ull * 50176, input = 4ull * 8 * 128 * 64;
  // Two block slots fit only once 9 inputs shrink to 3 (2 slots + the running activation).
  b.compute_bytes = all.compute_total - blocks + 2 * slot - 6 * input + 100;
  const OffloadPlan p = plan_offload(c, s, b);
  CHECK(p.inputs_in_store);
  CHECK(p.stream_slots == 2);
  CHECK(p.compute_total <= b.compute_bytes);
  // Per step: the 8 inputs written once and read once.
  b.compute_bytes = 0;
  const OffloadPlan resident = plan_offload(c, s, b);
  CHECK(p.ssd_write_bytes == resident.ssd_write_bytes + 8 * input);
  CHECK(p.ssd_read_bytes == resident.ssd_read_bytes + 8 * input);
}

namespace {

// L = 8, C = 64: block 49,984 parameters (50,176 padded); embeddings + ln_f 20,480 + 128 = 20,608;
// N = 20,608 + 8 · 49,984 = 420,480.
constexpr std::uint64_t kBlock = 49984, kPadded = 50176, kOutside = 20608, kParams = 420480;

// The model those numbers are for.
ModelConfig eight_block_model() { return model_config_from_name("custom:L=8,C=64,H=4,V=256,T=64"); }

// The CUDA tier's run in the tests below: B = 4, T = 32, K = `accum`, no clipping.
OffloadShape cuda_shape(std::int64_t accum = 1) {
  OffloadShape s;
  s.cuda = true;
  s.micro_batch = 4;
  s.seq = 32;
  s.accum = accum;
  return s;
}

// A CUDA budget that holds everything but the 8 blocks' bf16 weights (and, with accumulation or
// clipping, all but 2 of the 8 fp32 block gradient buffers), plus `slots` bf16 block slots.
std::uint64_t cuda_budget_for_slots(const ModelConfig& c, const OffloadShape& s,
                                    std::int64_t slots) {
  const OffloadPlan all = plan_offload(c, s, roomy());
  REQUIRE(all.stream_slots == 0);
  const std::uint64_t grad_buffers =
      4 * kBlock * static_cast<std::uint64_t>(all.grad_block_slots - 2);
  return all.compute_total - 2 * 8 * kBlock - grad_buffers +
         static_cast<std::uint64_t>(slots) * 2 * kPadded + 100;
}

}  // namespace

TEST_CASE("the CUDA tier streams bf16 blocks through the slots that fit instead of refusing") {
  const ModelConfig c = eight_block_model();
  REQUIRE(static_cast<std::uint64_t>(c.param_count()) == kParams);
  const OffloadShape s = cuda_shape();
  OffloadBudgets b = roomy();
  const OffloadPlan all = plan_offload(c, s, b);
  CHECK(all.resident_blocks == 8);
  // Fits: the resident plan, byte for byte the formula it always had.
  CHECK(all.pcie_h2d_bytes == 2 * kParams + 16 * 4 * 32);
  CHECK(all.pcie_d2h_bytes == 4 * kParams);
  CHECK(all.describe().find("streamed") == std::string::npos);

  b.compute_bytes = cuda_budget_for_slots(c, s, 3);
  const OffloadPlan three = plan_offload(c, s, b);
  CHECK(three.stream_slots == 3);
  CHECK(three.resident_blocks == 0);
  CHECK(three.grad_block_slots == 2);
  CHECK_FALSE(three.block_grads_in_cpu);  // K = 1, no clipping: the pool of two on the GPU
  CHECK(three.compute_total <= b.compute_bytes);
  CHECK(three.compute_total == all.compute_total - 2 * 8 * kBlock + 3 * 2 * kPadded);
  // One budget byte less than three slots need: two.
  b.compute_bytes = three.compute_total - 1;
  CHECK(plan_offload(c, s, b).stream_slots == 2);
  // Per iteration (K = 1): up, the other units' bf16 weights + every block twice (forward and
  // recompute) + the int64 tokens and targets; down, every fp32 gradient once.
  CHECK(three.pcie_h2d_bytes == 2 * kOutside + 2 * 8 * 2 * kBlock + 16 * 4 * 32);
  CHECK(three.pcie_d2h_bytes == 4 * kParams);
  // The two pinned bf16 upload buffers count in --cpu-mem, beside the states.
  CHECK(three.states_in_cpu);
  bool upload_buffers = false;
  for (const PlanItem& item : three.cpu_items) {
    if (item.what == "2 pinned bf16 piece upload buffers") {
      upload_buffers = true;
      CHECK(item.bytes == 2 * 2 * kPadded);
    }
  }
  CHECK(upload_buffers);
  const std::string text = three.describe();
  INFO(text);
  CHECK(text.find("streamed whole through 3 compute-tier slots") != std::string::npos);
  CHECK(text.find("uploaded on a copy stream") != std::string::npos);
}

TEST_CASE("streamed CUDA blocks with accumulation add their gradients up in CPU memory") {
  const ModelConfig c = eight_block_model();
  OffloadShape s = cuda_shape(3);
  OffloadBudgets b = roomy();
  b.compute_bytes = cuda_budget_for_slots(c, s, 2);
  const OffloadPlan p = plan_offload(c, s, b);
  CHECK(p.stream_slots == 2);
  CHECK(p.grad_block_slots == 2);  // the GPU keeps only the pool they leave through
  CHECK(p.block_grads_in_cpu);
  // Up: every block twice per micro-batch; down: each block's gradients once per micro-batch.
  CHECK(p.pcie_h2d_bytes == 2 * kOutside + 3 * 2 * 8 * 2 * kBlock + 16 * 4 * 32 * 3);
  CHECK(p.pcie_d2h_bytes == 4 * kOutside + 3 * 8 * 4 * kBlock);
  // CPU budget: states (12 B · padded units) + pinned unit slots + upload buffers + 8 fp32
  // accumulators; one byte less and the states go to the store (with a block read buffer).
  const std::uint64_t states = 12 * (20480 + 8 * kPadded + 1024);
  const std::uint64_t need = states + 2 * 6 * kPadded + 2 * 2 * kPadded + 8 * 4 * kBlock;
  b.cpu_bytes = need;
  const OffloadPlan in_ram = plan_offload(c, s, b);
  CHECK(in_ram.states_in_cpu);
  CHECK(in_ram.cpu_total == need);
  CHECK(in_ram.ssd_read_bytes == 0);
  b.cpu_bytes = need - 1;
  const OffloadPlan in_store = plan_offload(c, s, b);
  CHECK_FALSE(in_store.states_in_cpu);
  CHECK(in_store.cpu_total ==
        2 * 12 * kPadded + 4 * kPadded + 2 * 6 * kPadded + 2 * 2 * kPadded + 8 * 4 * kBlock);
  // The loader reads each block's fp32 master from the store for every forward and backward.
  CHECK(in_store.ssd_read_bytes == states + 3 * 2 * 8 * 4 * kPadded);
  // Clipping alone (K = 1) also keeps the gradients in CPU memory, sent down once per step.
  s.accum = 1;
  s.grad_clip = true;
  b.cpu_bytes = std::uint64_t{1} << 30;
  b.compute_bytes = cuda_budget_for_slots(c, s, 2);
  const OffloadPlan clipped = plan_offload(c, s, b);
  CHECK(clipped.block_grads_in_cpu);
  CHECK(clipped.pcie_d2h_bytes == 4 * kParams);
}

TEST_CASE("streamed CUDA blocks' gradient accumulators go to the store when RAM cannot hold them") {
  const ModelConfig c = eight_block_model();
  OffloadShape s = cuda_shape(3);
  OffloadBudgets b = roomy();
  b.compute_bytes = cuda_budget_for_slots(c, s, 2);
  // States in the store with the accumulators in RAM (the previous test's in_store plan) ...
  const std::uint64_t ram =
      2 * 12 * kPadded + 4 * kPadded + 2 * 6 * kPadded + 2 * 2 * kPadded + 8 * 4 * kBlock;
  b.cpu_bytes = ram;
  const OffloadPlan in_ram = plan_offload(c, s, b);
  CHECK(in_ram.block_grads_in_cpu);
  CHECK_FALSE(in_ram.block_grads_in_store);
  // ... and one byte less: they go to the store, RAM keeps one gradient piece read buffer (the
  // pinned gradient slots carry the pieces), and every micro-batch writes and reads each of them.
  b.cpu_bytes = ram - 1;
  const OffloadPlan p = plan_offload(c, s, b);
  CHECK(p.block_grads_in_cpu);
  CHECK(p.block_grads_in_store);
  CHECK_FALSE(p.states_in_cpu);
  const std::uint64_t floor = ram - 8 * 4 * kBlock + 4 * kPadded;
  CHECK(p.cpu_total == floor);
  CHECK(p.ssd_read_bytes == in_ram.ssd_read_bytes + 3 * 8 * 4 * kPadded);
  CHECK(p.ssd_write_bytes == in_ram.ssd_write_bytes + 3 * 8 * 4 * kPadded);
  CHECK(p.ssd_total > in_ram.ssd_total);  // 8 more store tensors, two slots per extent
  CHECK(p.describe().find("block gradients add up in the store") != std::string::npos);
  b.cpu_bytes = floor - 1;
  CHECK_THROWS_AS(plan_offload(c, s, b), sparsetrain::common::UsageError);
}

TEST_CASE("CUDA block inputs go to pinned CPU memory when two slots do not fit beside them") {
  const ModelConfig c = eight_block_model();
  const OffloadShape s = cuda_shape();
  OffloadBudgets b = roomy();
  // Two slots with the 9 block inputs (9 · 2 · 4·32·64 = 147,456 B) on the GPU need exactly this.
  const std::uint64_t two_with_inputs = cuda_budget_for_slots(c, s, 2) - 100;
  b.compute_bytes = two_with_inputs;
  const OffloadPlan kept = plan_offload(c, s, b);
  CHECK(kept.stream_slots == 2);
  CHECK_FALSE(kept.inputs_in_cpu);
  CHECK(kept.compute_total == two_with_inputs);
  // One byte less: the inputs leave (2 GPU input slots + the running activation, 3 · 16,384 B).
  b.compute_bytes = two_with_inputs - 1;
  const OffloadPlan out = plan_offload(c, s, b);
  CHECK(out.inputs_in_cpu);
  CHECK_FALSE(out.inputs_in_store);
  CHECK(out.stream_slots == 2);
  const std::uint64_t input = 2 * 4 * 32 * 64;  // one bf16 input, 16,384 B
  CHECK(out.compute_total == two_with_inputs - 9 * input + 3 * input);
  bool pinned_inputs = false;
  for (const PlanItem& item : out.cpu_items) {
    if (item.what == "8 pinned bf16 block inputs") {
      pinned_inputs = true;
      CHECK(item.bytes == 8 * input);
    }
  }
  CHECK(pinned_inputs);
  // Each of the 8 inputs goes down in the forward and comes back up for the backward.
  CHECK(out.pcie_h2d_bytes == 2 * kOutside + 2 * 8 * 2 * kBlock + 16 * 4 * 32 + 8 * input);
  CHECK(out.pcie_d2h_bytes == 4 * kParams + 8 * input);
  CHECK(out.describe().find("block inputs go to pinned CPU memory") != std::string::npos);
  CHECK(out.ssd_items.size() == 1);  // nothing of the inputs in the store
}

TEST_CASE(
    "a CUDA budget below two streamed slots and two input slots is refused with the numbers") {
  const ModelConfig c = eight_block_model();
  OffloadShape s = cuda_shape();
  s.pieces_per_block = 1;  // whole blocks only
  OffloadBudgets b = roomy();
  const std::uint64_t input = 2 * 4 * 32 * 64;
  const std::uint64_t smallest = cuda_budget_for_slots(c, s, 2) - 100 - 6 * input;
  b.compute_bytes = smallest;
  CHECK(plan_offload(c, s, b).inputs_in_cpu);
  b.compute_bytes = smallest - 1;
  const std::string message = usage_message(c, s, b);
  INFO(message);
  CHECK(message.find("--gpu-mem") != std::string::npos);
  CHECK(message.find(std::to_string(smallest) + " B") != std::string::npos);
  CHECK(message.find(std::to_string(smallest - 1) + " B") != std::string::npos);
  // Left to choose, the planner streams the blocks' pieces there instead.
  s.pieces_per_block = 0;
  const OffloadPlan pieces = plan_offload(c, s, b);
  CHECK(pieces.pieces_per_block == kGpt2BlockPieces);
  CHECK(pieces.compute_total <= b.compute_bytes);
}

TEST_CASE(
    "streamed CUDA blocks add the loader's bf16 conversion to the bound when it is measured") {
  const ModelConfig c = eight_block_model();
  const OffloadShape s = cuda_shape(2);
  OffloadBudgets b = roomy();
  OffloadRates r;
  r.stream_convert_params_per_s = 1e3;  // 2 · 2 · 8 · 49,984 parameters: 1599.488 s, binds
  const OffloadPlan resident = plan_offload(c, s, b, r);
  for (const BoundTerm& term : resident.terms) CHECK(term.name != "stream_convert");
  b.compute_bytes = cuda_budget_for_slots(c, s, 2);
  const OffloadPlan streamed = plan_offload(c, s, b, r);
  REQUIRE(streamed.stream_slots == 2);
  CHECK(streamed.binding == "stream_convert");
  CHECK(streamed.bound_seconds == doctest::Approx(2.0 * 2 * 8 * 49984 / 1e3));
}

TEST_CASE("states in the store are staged in pieces: two slots of one piece, not of one unit") {
  // tiny with pieces of 16,384 floats: the largest piece is 16,384 (blocks: 3 pieces of 16,384
  // and one of 1,024; embeddings 16,384 + 8,192), so a slot is 12 · 16,384 = 196,608 B.
  const ModelConfig c = model_config_from_name("tiny");
  OffloadShape s;
  s.state_piece_floats = 16384;
  OffloadBudgets b = roomy();
  b.cpu_bytes = 2 * 196608;
  const OffloadPlan plan = plan_offload(c, s, b);
  CHECK_FALSE(plan.states_in_cpu);
  CHECK(plan.state_piece_floats == 16384);
  CHECK(plan.cpu_total == 2 * 196608);
  // The same bytes go to and from the store: the layout changes, not the amount.
  CHECK(plan.ssd_read_bytes == kTinyStateBytes);
  CHECK(plan.ssd_total == 2 * 5 * (std::uint64_t{4} << 20));
  const std::string text = plan.describe();
  INFO(text);
  CHECK(text.find("a piece of at most 64.0 KiB of each") != std::string::npos);
  b.cpu_bytes = 2 * 196608 - 1;
  const std::string message = usage_message(c, s, b);
  INFO(message);
  CHECK(message.find(std::to_string(2 * 196608) + " B") != std::string::npos);
  // Pieces larger than every unit: whole units, as without pieces.
  s.state_piece_floats = 1 << 24;
  b.cpu_bytes = 2 * kTinySlotBytes;
  CHECK(plan_offload(c, s, b).cpu_total == 2 * kTinySlotBytes);
  s.state_piece_floats = 1000;
  CHECK(usage_message(c, s, b).find("multiple of 1024") != std::string::npos);
}

TEST_CASE("streamed CUDA blocks go up piece by piece: their CPU buffers hold one state piece") {
  // The loader converts and uploads a block one state piece at a time (from the RAM states
  // directly: a piece's master segment is contiguous there), so its two pinned bf16 buffers and,
  // with the states in the store, its fp32 read buffer hold one piece (16,384 floats), not one
  // block (50,176); so do the optimizer's pinned gradient and weight slots.
  const ModelConfig c = eight_block_model();
  OffloadShape s = cuda_shape();
  OffloadBudgets b = roomy();
  b.compute_bytes = cuda_budget_for_slots(c, s, 2);
  auto item_bytes = [](const OffloadPlan& p, const std::string& what) {
    for (const PlanItem& item : p.cpu_items)
      if (item.what == what) return item.bytes;
    return std::uint64_t{0};
  };
  const OffloadPlan whole = plan_offload(c, s, b);
  REQUIRE(whole.states_in_cpu);
  CHECK(item_bytes(whole, "2 pinned bf16 piece upload buffers") == 2 * 2 * kPadded);
  s.state_piece_floats = 16384;
  const OffloadPlan pieces = plan_offload(c, s, b);
  REQUIRE(pieces.states_in_cpu);
  CHECK(item_bytes(pieces, "2 pinned bf16 piece upload buffers") == 2 * 2 * 16384);
  CHECK(item_bytes(pieces, "2 pinned fp32 gradient slots") == 2 * 4 * 16384);
  CHECK(item_bytes(pieces, "2 pinned bf16 weight slots") == 2 * 2 * 16384);
  CHECK(item_bytes(pieces, "fp32 piece read buffer") == 0);  // states in RAM: read in place
  // 2 · (2 + 4 + 2) bytes per float fewer, for 50,176 − 16,384 floats.
  CHECK(pieces.cpu_total == whole.cpu_total - 16 * (kPadded - 16384));
  // One byte less: the states go to the store, and the loader reads a piece at a time from it.
  b.cpu_bytes = pieces.cpu_total - 1;
  const OffloadPlan spilled = plan_offload(c, s, b);
  CHECK_FALSE(spilled.states_in_cpu);
  CHECK(item_bytes(spilled, "fp32 piece read buffer") == 4 * 16384);
}

namespace {

// The CPU-tier shape with the granularity asked for (0 = the planner's choice).
OffloadShape shape_with_pieces(std::int64_t pieces_per_block) {
  OffloadShape s = small_shape();
  s.pieces_per_block = pieces_per_block;
  return s;
}

const PlanItem* find_item(const std::vector<PlanItem>& items, const std::string& what) {
  for (const PlanItem& item : items) {
    if (item.what == what) return &item;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("blocks too large for two whole slots stream in pieces; whole blocks wherever they fit") {
  const ModelConfig c = eight_block_model();
  // The largest piece: MLP in, 4 · 64² + 6 · 64 = 16,768 parameters (fp32 on the CPU tier).
  constexpr std::uint64_t kPiece = 16768;
  REQUIRE(static_cast<std::uint64_t>(c.max_block_piece_param_count()) == kPiece);
  std::int64_t sum = 0;
  for (int p = 0; p < c.block_piece_count(); ++p) sum += c.block_piece_param_count(p);
  CHECK(sum == c.block_param_count());
  CHECK(block_piece_tensors(c, kMlpInPiece).first == 6);
  CHECK(block_piece_tensors(c, kMlpOutPiece).last == 12);

  OffloadBudgets b = roomy();
  const OffloadPlan all = plan_offload(c, small_shape(), b);
  REQUIRE(all.stream_slots == 0);
  // Pieces through as many slots as fit: what stays beside them, then exactly two slots.
  b.compute_bytes = all.compute_total - 1;
  const OffloadPlan many = plan_offload(c, shape_with_pieces(kGpt2BlockPieces), b);
  REQUIRE(many.pieces_per_block == kGpt2BlockPieces);
  const std::uint64_t beside =
      many.compute_total - 4 * kPiece * static_cast<std::uint64_t>(many.stream_slots);
  // Left to choose at that budget, the planner streams whole blocks: they fit.
  const OffloadPlan whole = plan_offload(c, small_shape(), b);
  CHECK(whole.pieces_per_block == 1);
  CHECK(whole.stream_slots >= 2);

  b.compute_bytes = beside + 2 * 4 * kPiece;
  const OffloadPlan p = plan_offload(c, small_shape(), b);
  CHECK(p.pieces_per_block == kGpt2BlockPieces);
  CHECK(p.stream_slots == 2);
  CHECK(p.stream_slot_floats == static_cast<std::int64_t>(kPiece));
  CHECK(p.compute_total <= b.compute_bytes);
  // A unit's update needs all of its pieces' gradients: they add up on the CPU side.
  CHECK(p.block_grads_in_cpu);
  CHECK(p.grad_block_slots == 2);
  const PlanItem* grads = find_item(p.compute_items, "2 block-piece gradient buffers (fp32)");
  REQUIRE(grads != nullptr);
  CHECK(grads->bytes == 2 * 4 * kPiece);
  const PlanItem* slots = find_item(p.compute_items, "2 streamed block-piece slots");
  REQUIRE(slots != nullptr);
  CHECK(slots->bytes == 2 * 4 * kPiece);
  // The pieces recompute what a whole block does (each needed tensor once): 6·N + 12·L·C·T plus
  // the recompute per token.
  CHECK(p.flops == doctest::Approx(c.train_flops_per_token_recompute(32) * 4 * 32 * 2));
  const std::string text = p.describe();
  INFO(text);
  CHECK(text.find("streamed in pieces (4 a block") != std::string::npos);
  CHECK(text.find("6N + 12LCT per token") != std::string::npos);
  // Whole blocks asked for at that budget: refused, naming the compute tier.
  const std::string refused = usage_message(c, shape_with_pieces(1), b);
  INFO(refused);
  CHECK(refused.find("--gpu-mem (compute tier) does not fit") != std::string::npos);
  CHECK(refused.find("streamed block slots") != std::string::npos);
}

TEST_CASE(
    "streamed pieces read each block's master from the store almost three times a micro-batch") {
  const ModelConfig c = eight_block_model();
  OffloadBudgets b = roomy();
  b.compute_bytes = plan_offload(c, small_shape(), roomy()).compute_total - 1;
  b.cpu_bytes = 3 << 20;  // the states (4.8 MiB) go to the store; the accumulators stay in RAM
  const OffloadPlan whole = plan_offload(c, shape_with_pieces(1), b);
  const OffloadPlan pieces = plan_offload(c, shape_with_pieces(kGpt2BlockPieces), b);
  REQUIRE_FALSE(pieces.states_in_cpu);
  REQUIRE_FALSE(whole.states_in_cpu);
  // states [master | m | v]: (20,480 + 8 · 50,176 + 1,024) floats · 12 B = 5,074,944 B.
  constexpr std::uint64_t kStates = 5074944, kBlockMaster = 4 * 50176;
  REQUIRE_FALSE(pieces.block_grads_in_store);
  REQUIRE_FALSE(whole.block_grads_in_store);
  // Pieces read their parameters exactly: forward, the pieces' inputs without MLP out
  // (4 · 64² + 64 = 16,448), each piece's backward: 3 · 49,984 − 16,448 floats a micro-batch.
  CHECK(pieces.ssd_read_bytes == kStates + 2 * 8 * 4 * (3 * 49984 - 16448));  // K = 2, L = 8
  CHECK(whole.ssd_read_bytes == kStates + 2 * 2 * 8 * kBlockMaster);
}

TEST_CASE("the store keeps two slots per extent where they fit the SSDs, else one") {
  const ModelConfig c = model_config_from_name("tiny");  // L = 2, C = 64, V = 256, T = 128
  OffloadBudgets b = roomy();
  b.store_extent_bytes = 4096;
  OffloadShape shape;
  shape.state_piece_floats = 1024;  // 12 KiB pieces: the units have 24, 49, 49 and 1 of them
  const OffloadPlan two = plan_offload(c, shape, b);
  CHECK(two.store_slots == 2);
  // Units padded to 1024 floats: embeddings 24,576, blocks 50,176 each, ln_f 1,024; train.state
  // one 4 KiB extent. Two slots: 2 · 4096 + 2 · 12 · (24,576 + 2 · 50,176 + 1,024) = 3,031,040 B.
  CHECK(two.ssd_total == 3031040);
  OffloadShape one_slot = shape;
  one_slot.store_slots = 1;
  const OffloadPlan one = plan_offload(c, one_slot, b);
  CHECK(one.store_slots == 1);
  CHECK_FALSE(one.states_in_cpu);    // in place: the states live in the store
  CHECK(one.block_grads_in_store);   // and every gradient is there before the first update
  CHECK(one.grad_block_slots == 2);  // resident blocks' gradients leave through a pool of two
  CHECK(one.ssd_two_slot_bytes > two.ssd_total);  // its layout's own: + the stored gradients
  // One slot: train.state 8,192 + a ring of n + 1 pieces per unit, 12,288 B each:
  // (25 + 2 · 50 + 2) · 12,288 = 1,560,576; block gradients 2 · 200,704; embedding and ln_f
  // gradients 98,304 + 4,096 and the journal's two 4 KiB records: 2,080,768 B.
  CHECK(one.ssd_total == 2080768);
  CHECK(one.ssd_bytes_per_param ==
        doctest::Approx(static_cast<double>(one.ssd_total) / static_cast<double>(c.param_count())));
  const auto compute_then_update = [](const OffloadPlan& p) {
    for (const BoundTerm& term : p.terms) {
      if (term.name == "compute_then_update") return true;
    }
    return false;
  };
  CHECK(compute_then_update(one));  // its updates wait for the seal after the backward
  CHECK_FALSE(compute_then_update(two));
  // Room for one copy only: the planner picks one slot.
  b.ssd_free_bytes = one.ssd_total;
  const OffloadPlan chosen = plan_offload(c, shape, b);
  CHECK(chosen.store_slots == 1);
  CHECK(chosen.ssd_two_slot_bytes == two.ssd_total);
  CHECK(chosen.describe().find("master + m + v in place") != std::string::npos);
  CHECK(chosen.describe().find("--resume finishes the step a crash interrupted") !=
        std::string::npos);
  CHECK(two.describe().find("--resume continues from the last commit") != std::string::npos);
  // Two asked for: refused with the way out and its size.
  OffloadShape two_slots = shape;
  two_slots.store_slots = 2;
  const std::string refused = usage_message(c, two_slots, b);
  INFO(refused);
  CHECK(refused.find("--ssd does not fit") != std::string::npos);
  CHECK(refused.find("--store-slots 1 (updates in place, journaled: 1.98 MiB = 2080768 B)") !=
        std::string::npos);
  // Not even one copy: refused with the one-slot layout, naming the two-slot need.
  b.ssd_free_bytes = one.ssd_total - 1;
  const std::string none = usage_message(c, shape, b);
  INFO(none);
  CHECK(none.find("needs 1.98 MiB = 2080768 B") != std::string::npos);
  CHECK(none.find("copy-on-write, would need 2.89 MiB = 3031040 B") != std::string::npos);
  // Units of one piece each (the default 2^24-float pieces): a spare piece per unit is a second
  // copy, so one slot saves nothing and is never chosen.
  OffloadBudgets small = roomy();
  small.ssd_free_bytes = plan_offload(c, {}, small).ssd_total - 1;
  const std::string single = usage_message(c, {}, small);
  INFO(single);
  CHECK(single.find("saves nothing here") != std::string::npos);
  OffloadShape bad;
  bad.store_slots = 3;
  CHECK(usage_message(c, bad, roomy()).find("3 slots per extent") != std::string::npos);
  bad = {};
  bad.pieces_per_block = 2;
  CHECK(usage_message(c, bad, roomy()).find("2 pieces per block") != std::string::npos);
}

TEST_CASE("GPT-3 175B plans on a 24 GiB GPU with pieces, and not with whole blocks") {
  const ModelConfig c = model_config_from_name("gpt3-175b");
  OffloadShape s;
  s.cuda = true;
  s.micro_batch = 1;
  s.seq = 2048;
  s.grad_clip = true;
  OffloadBudgets b;
  b.compute_bytes = std::uint64_t{24} << 30;
  b.cpu_bytes = std::uint64_t{64} << 30;
  AssumedSsds ssds{12, 4000000000000ull, 2e9, 2e9};
  b.ssd_free_bytes = ssds.total_bytes();
  const OffloadRates rates = with_assumed_ssds({}, ssds);
  CHECK(rates.ssd_read_bytes_per_s == doctest::Approx(24e9));
  CHECK(rates.ssd_mixed_bytes_per_s == 0);
  const OffloadPlan p = plan_offload(c, s, b, rates);
  INFO(p.describe());
  CHECK(p.pieces_per_block == kGpt2BlockPieces);
  CHECK(p.compute_total <= b.compute_bytes);
  CHECK(p.block_grads_in_store);  // 4 B per block parameter do not fit 64 GiB
  CHECK(p.store_slots == 2);
  s.pieces_per_block = 1;
  CHECK(usage_message(c, s, b).find("--gpu-mem (compute tier) does not fit") != std::string::npos);
  // One 4 TB disk holds one copy of the states and the stored gradients, not two.
  s.pieces_per_block = 0;
  b.ssd_free_bytes = 4000000000000ull;
  const OffloadPlan one = plan_offload(c, s, b, rates);
  CHECK(one.store_slots == 1);
  CHECK(one.ssd_bytes_per_param > 12);
  CHECK(one.ssd_bytes_per_param < 16.5);  // + 4 B per block parameter of stored gradients
}

// Llama 3.1 405B (C = 16384, I = 53248, V = 128256, untied): a block is 6.0 GiB of bf16 and its
// largest piece (gate, up or down) 1.6 GiB; the embedding and head gradients would take 15.7 GiB of
// fp32 on the GPU, so they add up in CPU memory; 70B fits with them on the GPU.
TEST_CASE("Llama 3.1 405B plans on a 24 GiB GPU and 64 GiB of RAM: pieces, head gradients in RAM") {
  OffloadShape s;
  s.cuda = true;
  s.micro_batch = 1;
  s.seq = 1024;
  s.grad_clip = true;
  OffloadBudgets b;
  b.compute_bytes = std::uint64_t{24} << 30;
  b.cpu_bytes = std::uint64_t{64} << 30;
  AssumedSsds ssds{4, 4000000000000ull, 2e9, 2e9};
  b.ssd_free_bytes = ssds.total_bytes();
  // The H200 machine's measured compute and PCIe rates (what a --dry-run without a GPU assumes).
  const OffloadRates rates = with_assumed_ssds(reference_cuda_rates(), ssds);
  const ModelConfig big = model_config_from_name("llama3.1-405b");
  CHECK(big.max_block_piece_param_count() == 16384 + 53248ll * 16384);  // gate + its norm
  const OffloadPlan p = plan_offload(big, s, b, rates);
  INFO(p.describe());
  CHECK(p.pieces_per_block == kLlamaBlockPieces);
  CHECK(p.outside_grads_in_cpu);
  CHECK(p.inputs_in_cpu);
  CHECK(p.compute_total <= b.compute_bytes);
  CHECK(p.cpu_total <= b.cpu_bytes);
  CHECK(p.binding == "ssd_read");
  CHECK(p.describe().find("embedding and head gradients add up in CPU memory") !=
        std::string::npos);
  // Without room in RAM for them (16 GiB), refused by --cpu-mem, not --gpu-mem.
  OffloadBudgets tight = b;
  tight.cpu_bytes = std::uint64_t{16} << 30;
  CHECK(usage_message(big, s, tight).find("--cpu-mem does not fit") != std::string::npos);
  const OffloadPlan seventy = plan_offload(model_config_from_name("llama3.1-70b"), s, b, rates);
  INFO(seventy.describe());
  CHECK(seventy.compute_total <= b.compute_bytes);
  CHECK_FALSE(seventy.outside_grads_in_cpu);
  CHECK(seventy.binding == "ssd_read");
}

TEST_CASE("the largest micro-batch fits and one more does not") {
  const ModelConfig c = eight_block_model();
  OffloadShape s = small_shape();
  OffloadBudgets b = roomy();
  b.compute_bytes = plan_offload(c, s, b).compute_total;  // B = 4 fits resident
  const std::int64_t largest = largest_micro_batch(c, s, b);
  REQUIRE(largest >= 4);
  s.micro_batch = largest;
  CHECK_NOTHROW(plan_offload(c, s, b));
  s.micro_batch = largest + 1;
  CHECK_THROWS_AS(plan_offload(c, s, b), sparsetrain::common::UsageError);
  b.compute_bytes = 1;
  CHECK(largest_micro_batch(c, s, b) == 0);
  CHECK(largest_micro_batch(c, s, roomy(), {}, 64) == 64);
}
