// The activation policy through the offloaded trainer (kept_activations.h, offload_plan.h:
// ActivationPlan): whatever each block keeps and wherever it waits — the compute tier, CPU memory,
// the store — the run is the in-memory trainer's bit for bit (losses, validation, final weights),
// with the states in the store, clipping and K = 2; a stopped run resumes to the same weights; the
// trainer counts the bytes the plan predicts and the recompute FLOPs it plans.
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "fuyou/model/demo_text.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/offload/offload_test_support.h"
#include "fuyou/offload/offload_trainer.h"
#include "fuyou/test_util.h"
#include "fuyou/train/in_memory_trainer.h"

using namespace sparsetrain::fuyou;
using offload_test::bitwise_equal;

namespace {

// One intra-op thread unless the caller chose (see offload_trainer_test.cpp).
const bool kOneThread = [] {
  if (std::getenv("OMP_NUM_THREADS") == nullptr) at::set_num_threads(1);
  return true;
}();

const ModelConfig kConfig = model_config_from_name("custom:L=3,C=64,H=4,V=256,T=64");

std::pair<TokenData, TokenData> demo_data() {
  return TokenData::from_bytes(std::string(demo_text())).split(0.1);
}

ModelWeights initial_weights() { return init_model_weights(kConfig, 3, at::TensorOptions()); }

// 20 steps, clipping, K = 2: every update waits for the norm and each block's gradients add up
// over two micro-batches.
TrainOptions clipped_options() {
  TrainOptions o;
  o.steps = 20;
  o.micro_batch = 4;
  o.seq = 16;
  o.lr = 1e-2;
  o.warmup = 2;
  o.eval_every = 10;
  o.eval_batches = 2;
  o.seed = 7;
  o.grad_clip = 0.5;
  o.accum = 2;
  return o;
}

// States in the store: a CPU budget (1.5 MiB) under the states' 2 MB, holding two staging slots of
// 16,384-float pieces (384 KiB) and every block's kept activations (keep-all: 3 × 248 KB).
OffloadOptions store_options(const std::string& name, const std::string& activations,
                             std::optional<ActivationTier> tier) {
  OffloadOptions o = offload_test::striped_store_options(fuyou_test::fresh_dir(name),
                                                         /*cpu_bytes=*/3 << 19);
  o.state_piece_floats = 16384;
  o.activations = parse_activation_request(activations, kConfig.n_layer);
  o.activations.tier = tier;
  return o;
}

struct Reference {
  Reference(const TrainOptions& options, const TokenData& train, const TokenData& valid)
      : trainer(kConfig, initial_weights(), options), result(trainer.train(train, valid)) {}
  InMemoryTrainer trainer;
  TrainResult result;
};

// Trains with `offload` and checks the run against the reference; returns the trainer's stats
// and plan.
std::pair<OffloadStats, OffloadPlan> check_against(const Reference& reference,
                                                   const TrainOptions& options,
                                                   const OffloadOptions& offload) {
  auto [train, valid] = demo_data();
  OffloadTrainer trainer(kConfig, initial_weights(), options, offload);
  CHECK_FALSE(trainer.plan().states_in_cpu);
  const TrainResult got = trainer.train(train, valid);
  const TrainResult& want = reference.result;
  REQUIRE(got.losses.size() == want.losses.size());
  for (std::size_t i = 0; i < want.losses.size(); ++i) {
    INFO("step " << i + 1);
    CHECK(got.losses[i] == want.losses[i]);
  }
  REQUIRE(got.val_losses.size() == want.val_losses.size());
  for (std::size_t i = 0; i < want.val_losses.size(); ++i) {
    CHECK(got.val_losses[i].second == want.val_losses[i].second);
  }
  CHECK(bitwise_equal(trainer.read_master(), reference.trainer.master()));
  return {trainer.stats(), trainer.plan()};
}

// Bytes of `set` for one micro-batch of the options, as CPU memory and the store hold them (fp32,
// each tensor from a 64-byte boundary).
std::uint64_t set_bytes(const TrainOptions& o, ActivationSet set) {
  return activation_set_bytes(kConfig, set, o.micro_batch, o.seq, /*cuda=*/false);
}

}  // namespace

TEST_CASE("every activation policy, in every tier, trains the in-memory run bit for bit") {
  const TrainOptions options = clipped_options();
  auto [train, valid] = demo_data();
  const Reference reference(options, train, valid);
  CHECK(reference.result.losses.back() < reference.result.losses.front() - 0.1);  // it trained
  struct Case {
    const char* activations;
    std::optional<ActivationTier> tier;
  };
  const Case cases[] = {{"recompute", std::nullopt},
                        {"keep-all", ActivationTier::kCompute},
                        {"keep-all", ActivationTier::kCpu},
                        {"keep-all", ActivationTier::kStore},
                        {"auto", std::nullopt},
                        {"attn,fc", ActivationTier::kStore},
                        {"0:all;2:qkv,resid,gelu", ActivationTier::kCpu}};
  const std::int64_t micro_batches = options.steps * options.accum;
  for (const Case& c : cases) {
    const std::string name =
        std::string(c.activations) + "-" + (c.tier ? activation_tier_name(*c.tier) : "auto");
    CAPTURE(name);
    const auto [stats, plan] =
        check_against(reference, options, store_options("acts-" + name, c.activations, c.tier));
    const ActivationPlan& acts = plan.activations;
    // The recompute the plan predicts is the one the backwards ran.
    CHECK(stats.recompute_flops ==
          doctest::Approx(acts.recompute_flops * static_cast<double>(options.steps)));
    // Bytes through each tier: every micro-batch's kept sets, there and back.
    std::uint64_t cpu = 0, store = 0;
    for (std::size_t l = 0; l < acts.kept.size(); ++l) {
      if (acts.kept[l].empty()) continue;
      const std::uint64_t bytes = set_bytes(options, acts.kept[l]);
      if (acts.tiers[l] == ActivationTier::kCpu) cpu += bytes;
      if (acts.tiers[l] == ActivationTier::kStore) store += bytes;
      if (c.tier) CHECK(acts.tiers[l] == *c.tier);
    }
    CHECK(stats.activation_bytes_to_cpu == cpu * micro_batches);
    CHECK(stats.activation_bytes_from_cpu == cpu * micro_batches);
    CHECK(stats.activation_bytes_written == store * micro_batches);
    CHECK(stats.activation_bytes_read == store * micro_batches);
    if (std::string(c.activations) == "recompute") CHECK(acts.blocks_keeping() == 0);
    if (std::string(c.activations) == "keep-all") CHECK(acts.recompute_flops == 0);
  }
}

TEST_CASE("auto keeps activations where compute binds, and a kept run resumes bit for bit") {
  const TrainOptions options = clipped_options();
  auto [train, valid] = demo_data();
  const Reference reference(options, train, valid);
  OffloadOptions offload = store_options("acts-auto-resume", "auto", ActivationTier::kStore);
  offload.rates.compute_flops_per_s = 1e6;  // compute binds by far: auto keeps what saves FLOPs
  {
    OffloadTrainer first(kConfig, initial_weights(), options, offload);
    const ActivationPlan& acts = first.plan().activations;
    CHECK(acts.mode == "auto");
    CHECK(acts.blocks_keeping() == kConfig.n_layer);
    CHECK(acts.recompute_flops < acts.recompute_seconds * 1e6);
    CHECK(first.plan().binding != "ssd_read");
    offload_test::train_and_stop_after(first, train, valid, 10);
  }
  offload.resume = true;
  OffloadTrainer second(kConfig, WeightSource(), options, offload);
  CHECK(second.first_step() == 11);
  const TrainResult got = second.train(train, valid);
  REQUIRE(got.losses.size() == 10);
  for (std::size_t i = 0; i < got.losses.size(); ++i) {
    CHECK(got.losses[i] == reference.result.losses[10 + i]);
  }
  CHECK(bitwise_equal(second.read_master(), reference.trainer.master()));
}

TEST_CASE("streamed in pieces, the kept activations spare the recompute's piece loads") {
  TrainOptions options = clipped_options();
  options.steps = 4;
  options.eval_every = 0;
  auto [train, valid] = demo_data();
  const Reference reference(options, train, valid);
  // A compute budget that streams pieces; keep-all in the store.
  OffloadOptions offload = store_options("acts-pieces", "keep-all", ActivationTier::kStore);
  offload.pieces_per_block = kGpt2BlockPieces;
  OffloadOptions recompute = offload;
  recompute.activations = {};
  offload.budgets.compute_bytes = plan_offload_run(kConfig, options, recompute).compute_total - 1;
  const auto [stats, plan] = check_against(reference, options, offload);
  REQUIRE(plan.pieces_per_block == kGpt2BlockPieces);
  // The store's two slots for the kept activations took the place of extra stream slots.
  CHECK(plan.stream_slots >= 2);
  CHECK(plan.compute_total <= offload.budgets.compute_bytes);
  // Every piece once in the forward and once in its backward, none for a recompute: 2·N_b per
  // block per micro-batch, plus the validations at steps 0 and 4 (2 batches of forwards each).
  const std::uint64_t block = static_cast<std::uint64_t>(kConfig.block_param_count());
  CHECK(stats.stream_read_bytes == 4 * (4 * 2 * 3 * 2 * block + 2 * 2 * 3 * block));
}

TEST_CASE("at the planned limit, the tensors a run makes stay within the plan's estimate of them") {
  // --gpu-mem exactly the plan's compute tier: the measured peak of what train() allocates
  // (compute_meter.h) against the plan's items for it (the rest — weights, gradient buffers, the
  // placements' slots — is allocated once, as planned, before the run).
  TrainOptions options = clipped_options();
  options.steps = 3;
  options.eval_every = 0;
  auto [train, valid] = demo_data();
  auto planned_dynamic = [](const OffloadPlan& plan) {
    std::uint64_t bytes = 0;
    for (const PlanItem& item : plan.compute_items) {
      for (const char* dynamic : {"block inputs", "one block's recompute", "weight gradients in",
                                  "logits chunk", "kept activations of", "block-input slots"}) {
        if (item.what.find(dynamic) != std::string::npos) bytes += item.bytes;
      }
    }
    return bytes;
  };
  struct Case {
    const char* activations;
    std::optional<ActivationTier> tier;
    bool stream;
  };
  for (const Case& c :
       {Case{"recompute", std::nullopt, false}, Case{"keep-all", ActivationTier::kCompute, false},
        Case{"keep-all", ActivationTier::kStore, true}}) {
    CAPTURE(c.activations);
    CAPTURE(c.stream);
    OffloadOptions offload = store_options("acts-limit", c.activations, c.tier);
    if (c.stream) {
      OffloadOptions recompute = offload;
      recompute.activations = {};
      offload.pieces_per_block = kGpt2BlockPieces;
      offload.budgets.compute_bytes =
          plan_offload_run(kConfig, options, recompute).compute_total - 1;
    }
    offload.budgets.compute_bytes = plan_offload_run(kConfig, options, offload).compute_total;
    OffloadTrainer trainer(kConfig, initial_weights(), options, offload);
    REQUIRE(trainer.plan().compute_total == offload.budgets.compute_bytes);
    CHECK((trainer.plan().stream_slots > 0) == c.stream);
    trainer.train(train, valid);
    const std::uint64_t peak = trainer.stats().compute_peak_bytes;
    MESSAGE("measured " << peak << " B of the plan's " << planned_dynamic(trainer.plan()) << " B");
    CHECK(peak > 0);
    CHECK(peak <= planned_dynamic(trainer.plan()));
  }
}
