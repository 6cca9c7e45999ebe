// The planner's activation policy (offload_plan.h: ActivationPlan) against hand-worked numbers for
// the tiny GPT: where kept sets go (the compute tier from the last block down, then CPU memory,
// then the store), what they add to the FLOPs, the store and its traffic; the cost model keeps what
// shortens the bound and nothing where the SSD binds; the --activations syntax and its refusals.
#include <doctest/doctest.h>

#include <string>

#include "common/error.h"
#include "fuyou/model/block_activations.h"
#include "fuyou/model/model_config.h"
#include "fuyou/offload/offload_plan.h"

using namespace sparsetrain::fuyou;
using sparsetrain::common::UsageError;

namespace {

// tiny: L = 2, C = 64, H = 4; B = 4, T = 32, K = 2: 128 tokens a micro-batch.
const ModelConfig kTiny = model_config_from_name("tiny");

OffloadShape shape_keeping(const std::string& activations) {
  OffloadShape s;
  s.micro_batch = 4;
  s.seq = 32;
  s.accum = 2;
  s.activations = parse_activation_request(activations, kTiny.n_layer);
  return s;
}

OffloadBudgets roomy() {
  OffloadBudgets b;
  b.cpu_bytes = std::uint64_t{1} << 30;
  b.ssd_free_bytes = std::uint64_t{1} << 40;
  return b;
}

// Keep-all per token: ln1 66 + qkv 192 + attn 68 + resid 64 + ln2 66 + fc 256 + gelu 256 = 968
// floats; × 128 tokens × 4 B = 495,616 B a block.
constexpr std::uint64_t kKeepAllBlock = 495616;

std::string refusal(const OffloadShape& s, const OffloadBudgets& b, const OffloadRates& r = {}) {
  try {
    plan_offload(kTiny, s, b, r);
  } catch (const UsageError& e) {
    return std::string(e.what()) + "\nhint: " + e.hint();
  }
  return "";
}

}  // namespace

TEST_CASE("keep-all fills the compute tier from the last block down, then CPU memory, the store") {
  CHECK(activation_set_floats_per_token(kTiny, ActivationSet::all(), false) == 968);
  const OffloadShape s = shape_keeping("keep-all");
  OffloadBudgets b = roomy();
  const OffloadPlan all_compute = plan_offload(kTiny, s, b);
  const ActivationPlan& a = all_compute.activations;
  CHECK(a.mode == "keep-all");
  CHECK(a.compute_bytes == 2 * kKeepAllBlock);
  CHECK(a.recompute_flops == 0);
  // Nothing recomputed: exactly 6·N' + 12·L·C·T per token.
  CHECK(all_compute.flops == doctest::Approx(kTiny.train_flops_per_token(32) * 128 * 2));

  // Room for one block beside the rest: block 1 (needed first by the backward) stays.
  OffloadShape recompute = shape_keeping("recompute");
  const std::uint64_t rest = plan_offload(kTiny, recompute, b).compute_total;
  b.compute_bytes = rest + kKeepAllBlock;
  const OffloadPlan one = plan_offload(kTiny, s, b);
  CHECK(one.stream_slots == 0);
  CHECK(one.activations.tiers[1] == ActivationTier::kCompute);
  CHECK(one.activations.tiers[0] == ActivationTier::kCpu);
  CHECK(one.activations.cpu_bytes == kKeepAllBlock);

  // No CPU room either and one byte less than two blocks' room: block 0 would go to the store,
  // but its two slots would then take block 1's room too, and nothing fits.
  b.cpu_bytes = plan_offload(kTiny, recompute, b).cpu_total;
  b.compute_bytes = rest + 2 * kKeepAllBlock - 1;
  CHECK(refusal(s, b).find("kept activations' slots (the store) does not fit") !=
        std::string::npos);
  // Asked for in the store: both blocks there, through two slots of one block.
  b.compute_bytes = rest + 2 * kKeepAllBlock;
  OffloadShape in_store = s;
  in_store.activations.tier = ActivationTier::kStore;
  const OffloadPlan stored = plan_offload(kTiny, in_store, b);
  CHECK(stored.activations.tiers[0] == ActivationTier::kStore);
  CHECK(stored.activations.tiers[1] == ActivationTier::kStore);
  CHECK(stored.activations.store_bytes == 2 * kKeepAllBlock);
  bool slots = false;
  for (const PlanItem& item : stored.compute_items) {
    if (item.what == "2 kept-activation slots (store)") slots = item.bytes == 2 * kKeepAllBlock;
  }
  CHECK(slots);
  // Each micro-batch writes them and reads them back: K = 2.
  const OffloadPlan base = plan_offload(kTiny, recompute, b);
  CHECK(stored.ssd_write_bytes == base.ssd_write_bytes + 2 * 2 * kKeepAllBlock);
  CHECK(stored.ssd_read_bytes == base.ssd_read_bytes + 2 * 2 * kKeepAllBlock);
  CHECK(stored.ssd_total == base.ssd_total + 2 * (std::uint64_t{4} << 20));  // a 4 MiB extent each
  CHECK(stored.describe().find("keep-all: kept ln1,qkv,attn,resid,ln2,fc,gelu in blocks 0-1 "
                               "(store)") != std::string::npos);
}

TEST_CASE("auto keeps what shortens a compute-bound step, and nothing where the SSD binds") {
  const OffloadShape s = shape_keeping("auto");
  OffloadBudgets b = roomy();
  b.cpu_bytes = 0;  // the states in the store: reading them is the SSD's part
  b.cpu_bytes = plan_offload(kTiny, shape_keeping("recompute"), roomy()).cpu_total;
  OffloadRates r;
  r.compute_flops_per_s = 1e8;  // compute binds by far
  const OffloadPlan fast_disk = plan_offload(kTiny, s, b, r);
  const ActivationPlan& a = fast_disk.activations;
  CHECK(a.mode == "auto");
  CHECK(fast_disk.binding == "compute");
  CHECK(fast_disk.bound_seconds < a.recompute_seconds);
  // What saves FLOPs is kept in both blocks (ln1, ln2 and gelu save none: never chosen).
  for (const ActivationSet& set : a.kept) CHECK(set == parse_activation_set("qkv,attn,resid,fc"));
  CHECK(a.recompute_flops == 0);
  CHECK(a.keep_all_seconds == doctest::Approx(fast_disk.bound_seconds));
  CHECK(fast_disk.describe().find("cost model: recompute predicts") != std::string::npos);

  // A slow disk reading the streamed states binds: keeping would not shorten the step, so auto
  // keeps nothing and predicts recompute's time.
  r.compute_flops_per_s = 1e12;
  r.ssd_read_bytes_per_s = 1e5;
  r.ssd_write_bytes_per_s = 1e5;
  const OffloadPlan slow_disk = plan_offload(kTiny, s, b, r);
  CHECK(slow_disk.binding.rfind("ssd_", 0) == 0);
  CHECK(slow_disk.activations.blocks_keeping() == 0);
  CHECK(slow_disk.bound_seconds == slow_disk.activations.recompute_seconds);
  CHECK(slow_disk.activations.next_best.find("bound by ssd_") != std::string::npos);
}

TEST_CASE("auto takes attention first at long sequences, the matmuls' outputs at short ones") {
  // attn saves 4·C·T FLOPs for C + H = 68 floats; fc 8·C², qkv 6·C², resid 2·C² for 4C, 3C, C
  // floats: C/2 = 32 FLOPs a byte each (the larger saving first among equals).
  OffloadRates r;
  r.compute_flops_per_s = 1e8;
  // Room in the compute tier for `floats` floats a token of one block, none in CPU memory, no
  // store: the first candidate that fits is what auto keeps.
  auto keeps = [&](std::int64_t batch, std::int64_t seq, std::int64_t floats) {
    OffloadShape s = shape_keeping("recompute");
    s.micro_batch = batch;
    s.seq = seq;
    OffloadBudgets b = roomy();
    const OffloadPlan base = plan_offload(kTiny, s, b);
    b.compute_bytes = base.compute_total + 4 * static_cast<std::uint64_t>(batch * seq * floats);
    b.cpu_bytes = base.cpu_total;
    b.ssd_free_bytes = base.ssd_total;
    s.activations = parse_activation_request("auto", kTiny.n_layer);
    const OffloadPlan p = plan_offload(kTiny, s, b, r);
    CHECK(p.activations.kept[0].empty());  // no room left for block 0
    return p.activations.kept[1].to_string();
  };
  // T = 128: attn saves 8·64·128/272 = 120 FLOPs a byte, first.
  CHECK(keeps(1, 128, 70) == "attn");
  CHECK(keeps(1, 128, 68 + 64) == "attn,resid");  // then fc, qkv do not fit: resid does
  // T = 8: attn 7.5 FLOPs a byte, last; fc, qkv first where they fit.
  CHECK(keeps(16, 8, 260) == "fc");
  CHECK(keeps(16, 8, 200) == "qkv");
  CHECK(keeps(16, 8, 70) == "resid");
}

TEST_CASE("--activations lists name blocks that exist, tensors that exist, once each") {
  using Mode = ActivationRequest::Mode;
  CHECK(parse_activation_request("auto", 4).mode == Mode::kAuto);
  CHECK(parse_activation_request("recompute", 4).mode == Mode::kRecompute);
  CHECK(parse_activation_request("keep-all", 4).mode == Mode::kKeepAll);
  const ActivationRequest every = parse_activation_request("attn,fc", 4);
  CHECK(every.mode == Mode::kList);
  for (const ActivationSet& set : every.sets) CHECK(set == parse_activation_set("attn,fc"));
  const ActivationRequest some = parse_activation_request("0-1:all;3:qkv", 4);
  CHECK(some.sets[0] == ActivationSet::all());
  CHECK(some.sets[1] == ActivationSet::all());
  CHECK(some.sets[2].empty());
  CHECK(some.sets[3] == parse_activation_set("qkv"));
  auto message = [](const std::string& text) {
    try {
      parse_activation_request(text, 4);
    } catch (const UsageError& e) {
      return std::string(e.what()) + " | " + e.hint();
    }
    return std::string("accepted");
  };
  CHECK(message("attn,mlp").find("unknown block activation 'mlp'") != std::string::npos);
  CHECK(message("4:attn").find("block 4 does not exist: the model has 4 blocks") !=
        std::string::npos);
  CHECK(message("2-9:attn").find("block 9 does not exist") != std::string::npos);
  CHECK(message("3-1:attn").find("is empty") != std::string::npos);
  CHECK(message("0:attn;0:fc").find("block 0 is named twice") != std::string::npos);
  CHECK(message("x:attn").find("not a block") != std::string::npos);
  CHECK(message("0:attn;fc").find("names no blocks") != std::string::npos);
  CHECK(message("").find("empty activation list") != std::string::npos);
  CHECK(parse_activation_tier("auto") == std::nullopt);
  CHECK(parse_activation_tier("store") == ActivationTier::kStore);
  CHECK_THROWS_AS(parse_activation_tier("ssd"), UsageError);
}

TEST_CASE("a budget too small for even one kept tensor is refused with its numbers") {
  OffloadShape s = shape_keeping("fc");
  s.activations.tier = ActivationTier::kCompute;
  OffloadBudgets b = roomy();
  b.compute_bytes = plan_offload(kTiny, shape_keeping("recompute"), b).compute_total + 1000;
  std::string why = refusal(s, b);
  INFO(why);
  CHECK(why.find("--gpu-mem (compute tier) for block 1's kept activations (fc) does not fit") !=
        std::string::npos);
  CHECK(why.find("kept activations 128 KiB") != std::string::npos);  // 256 floats · 128 · 4 B
  CHECK(why.find("hint: keep fewer activations (--activations)") != std::string::npos);
  s.activations.tier = ActivationTier::kCpu;
  b.cpu_bytes = plan_offload(kTiny, shape_keeping("recompute"), b).cpu_total;
  why = refusal(s, b);
  CHECK(why.find("--cpu-mem for block 1's kept activations (fc) does not fit") !=
        std::string::npos);
  // CUDA: pinned memory when the GPU has no room, over PCIe, through two GPU slots; the store
  // behind two pinned staging buffers when CPU memory has no room either.
  OffloadShape cuda = shape_keeping("fc");
  cuda.cuda = true;
  OffloadShape cuda_recompute = shape_keeping("recompute");
  cuda_recompute.cuda = true;
  b = roomy();
  const OffloadPlan cuda_base = plan_offload(kTiny, cuda_recompute, b);
  b.compute_bytes = cuda_base.compute_total;
  why = refusal(cuda, b);
  CHECK(why.find("for the kept activations' slots (pinned memory) does not fit") !=
        std::string::npos);
  const std::uint64_t fc_block = 2 * 256 * 128;  // bf16
  b.compute_bytes = cuda_base.compute_total + 2 * fc_block;
  // (Two slots hold as much as both blocks' fc: the planner alone would keep them on the GPU.)
  cuda.activations.tier = ActivationTier::kCpu;
  const OffloadPlan pinned = plan_offload(kTiny, cuda, b);
  CHECK(pinned.activations.tiers[0] == ActivationTier::kCpu);
  CHECK(pinned.activations.tiers[1] == ActivationTier::kCpu);
  CHECK(pinned.activations.cpu_bytes == 2 * fc_block);
  CHECK(pinned.pcie_d2h_bytes == cuda_base.pcie_d2h_bytes + 2 * 2 * fc_block);  // K = 2
  CHECK(pinned.pcie_h2d_bytes == cuda_base.pcie_h2d_bytes + 2 * 2 * fc_block);
  CHECK(pinned.describe().find("2 kept-activation slots (pinned)") != std::string::npos);
  // The store: both blocks through the GPU slots, down and up PCIe as pinned ones do, to the SSD
  // and back, staged in two pinned buffers.
  cuda.activations.tier = ActivationTier::kStore;
  b.cpu_bytes = cuda_base.cpu_total + 2 * fc_block;
  const OffloadPlan stored = plan_offload(kTiny, cuda, b);
  CHECK(stored.activations.tiers[0] == ActivationTier::kStore);
  CHECK(stored.activations.tiers[1] == ActivationTier::kStore);
  CHECK(stored.activations.store_bytes == 2 * fc_block);
  CHECK(stored.activations.cpu_bytes == 0);
  CHECK(stored.cpu_total == cuda_base.cpu_total + 2 * fc_block);  // the staging buffers
  CHECK(stored.describe().find("2 kept-activation staging buffers (pinned, for the store)") !=
        std::string::npos);
  CHECK(stored.pcie_d2h_bytes == pinned.pcie_d2h_bytes);
  CHECK(stored.pcie_h2d_bytes == pinned.pcie_h2d_bytes);
  CHECK(stored.ssd_write_bytes == cuda_base.ssd_write_bytes + 2 * 2 * fc_block);  // K = 2
  CHECK(stored.ssd_read_bytes == cuda_base.ssd_read_bytes + 2 * 2 * fc_block);
  // A byte short of the staging buffers: refused with them named.
  b.cpu_bytes -= 1;
  why = refusal(cuda, b);
  CHECK(why.find("--cpu-mem for the kept activations' staging buffers (pinned, for the store) "
                 "does not fit") != std::string::npos);
  CHECK(why.find("2 kept-activation staging buffers 128 KiB") != std::string::npos);
}

TEST_CASE("CUDA keep-all with little CPU memory: the last blocks pinned, the first in the store") {
  // Six blocks' keep-all: the GPU holds only its two slots, CPU memory the staging buffers and
  // three blocks; from block 5 down: pinned while there is room, then the store.
  const ModelConfig six = model_config_from_name("custom:L=6,C=64,H=4,V=256,T=64");
  OffloadShape s = shape_keeping("keep-all");
  s.activations = parse_activation_request("keep-all", six.n_layer);
  s.cuda = true;
  OffloadShape recompute = shape_keeping("recompute");
  recompute.activations = parse_activation_request("recompute", six.n_layer);
  recompute.cuda = true;
  OffloadBudgets b = roomy();
  const OffloadPlan base = plan_offload(six, recompute, b);
  const std::uint64_t block =
      activation_set_bytes(six, ActivationSet::all(), s.micro_batch, s.seq, /*cuda=*/true);
  b.compute_bytes = base.compute_total + 2 * block;
  b.cpu_bytes = base.cpu_total + 2 * block + 3 * block;
  const OffloadPlan plan = plan_offload(six, s, b);
  INFO(plan.describe());
  for (std::int64_t l = 0; l < 6; ++l) {
    CAPTURE(l);
    CHECK(plan.activations.tiers[static_cast<std::size_t>(l)] ==
          (l >= 3 ? ActivationTier::kCpu : ActivationTier::kStore));
  }
  CHECK(plan.activations.cpu_bytes == 3 * block);
  CHECK(plan.activations.store_bytes == 3 * block);
  CHECK(plan.cpu_total == b.cpu_bytes);
}

TEST_CASE("streaming in pieces where the SSD binds, auto keeps what spares the pieces' reloads") {
  // States in the store and blocks streamed in pieces from it: each block's recompute reloads
  // pieces 0-2 unless ln1 + qkv, resid, ln2 + fc are kept (block_activations.h: recompute_pieces).
  OffloadShape s = shape_keeping("recompute");
  s.pieces_per_block = kGpt2BlockPieces;
  OffloadBudgets b = roomy();
  b.compute_bytes = plan_offload(kTiny, s, roomy()).compute_total - 1;
  b.cpu_bytes = 3 * 602112;  // under the states' 1.5 MB: they and the stream read the store
  OffloadRates r;
  r.ssd_read_bytes_per_s = 1e6;  // the store's reads bind by far
  const OffloadPlan recompute = plan_offload(kTiny, s, b, r);
  REQUIRE(recompute.pieces_per_block == kGpt2BlockPieces);
  REQUIRE_FALSE(recompute.states_in_cpu);
  CHECK(recompute.binding.rfind("ssd_read", 0) == 0);
  s.activations = parse_activation_request("auto", kTiny.n_layer);
  const OffloadPlan chosen = plan_offload(kTiny, s, b, r);
  INFO(chosen.describe());
  for (const ActivationSet& set : chosen.activations.kept) {
    CHECK(recompute_pieces(kTiny, set) == PieceFlags{});
  }
  // No recompute reloads: 2·N_b of each block per micro-batch, K = 2, 2 blocks, fp32.
  const std::uint64_t block = static_cast<std::uint64_t>(kTiny.block_param_count());
  const std::uint64_t saved =
      2 * 2 * 4 * (3 * block - kTiny.block_piece_param_count(3) - 2 * block);
  CHECK(chosen.ssd_read_bytes + saved == recompute.ssd_read_bytes);
  CHECK(chosen.bound_seconds < recompute.bound_seconds);
}
