// Llama-family blocks through the offloaded trainer: the same interface as GPT-2's (a block's named
// tensors, model_weights.h), so every placement must again give the in-memory trainer's bits —
// states in the store under a CPU budget below them, blocks streamed through two slots, block
// inputs through the store, clipping and accumulation, a stop and --resume — for a grouped-query
// Llama with an untied head and a Qwen2-style block (q, k, v biases) with a tied one, whole or in
// pieces. What Llama blocks cannot do yet (keep activation sets) is refused before anything runs.
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>

#include "common/error.h"
#include "fuyou/model/demo_text.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/offload/offload_plan.h"
#include "fuyou/offload/offload_test_support.h"
#include "fuyou/offload/offload_trainer.h"
#include "fuyou/test_util.h"
#include "fuyou/train/in_memory_trainer.h"

using namespace sparsetrain::fuyou;
using offload_test::bitwise_equal;

namespace {

const bool kOneThread = [] {
  if (std::getenv("OMP_NUM_THREADS") == nullptr) at::set_num_threads(1);
  return true;
}();

// 3 blocks, C = 64, 4 query heads over 2 K/V heads of 16, SwiGLU of 96, rope_theta 5e5 with the
// llama3 scaling, V = 256 (the byte tokens), an untied head; `qwen`: q, k, v biases, tied head.
ModelConfig tiny_llama(bool qwen) {
  ModelConfig c;
  c.family = ModelFamily::kLlama;
  c.name = qwen ? "tiny-qwen2" : "tiny-llama";
  c.n_layer = 3;
  c.n_embd = 64;
  c.n_head = 4;
  c.n_kv_head = 2;
  c.intermediate = 96;
  c.vocab = 256;
  c.n_positions = 64;
  c.layer_norm_eps = 1e-6;
  c.rope_theta = 500000.0;
  if (!qwen) {
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.original_max_positions = 16;
  }
  c.qkv_bias = qwen;
  c.tie_word_embeddings = qwen;
  return c;
}

TrainOptions small_options() {
  TrainOptions o;
  o.steps = 12;
  o.micro_batch = 4;
  o.seq = 32;
  o.lr = 1e-2;
  o.warmup = 2;
  o.eval_every = 6;
  o.eval_batches = 2;
  o.seed = 7;
  return o;
}

struct Data {
  std::pair<TokenData, TokenData> split =
      TokenData::from_bytes(std::string(demo_text())).split(0.1);
};

// The states' bytes: master, m and v of every unit, padded (state_pieces.h), 12 B a float.
std::uint64_t state_bytes(const ModelConfig& config) {
  std::uint64_t floats = 0;
  for (std::int64_t u = 0; u < unit_count(config); ++u) floats += unit_padded_params(config, u);
  return 12 * floats;
}

// A compute budget for two streamed block slots (and, `inputs_out`, the block inputs out too).
std::uint64_t budget_for_two_slots(const ModelConfig& config, const TrainOptions& options,
                                   OffloadOptions offload, bool inputs_out) {
  offload.budgets.compute_bytes = 0;
  const OffloadPlan all = plan_offload_run(config, options, offload);
  REQUIRE(all.stream_slots == 0);
  const std::uint64_t blocks = 4ull * config.n_layer * config.block_param_count();
  const std::uint64_t slot = 4ull * unit_padded_params(config, 1);
  const std::uint64_t input = 4ull * options.micro_batch * options.seq * config.n_embd;
  return all.compute_total - blocks + 2 * slot + 1000 - (inputs_out ? input : 0);
}

// Trains in memory and offloaded from the same init; checks losses, validation and final weights.
OffloadStats compare(const ModelConfig& config, const TrainOptions& options,
                     const OffloadOptions& offload, bool expect_states_in_cpu) {
  const Data data;
  const ModelWeights initial = init_model_weights(config, 3, at::TensorOptions());
  InMemoryTrainer reference(config, initial, options);
  const TrainResult want = reference.train(data.split.first, data.split.second);
  OffloadTrainer trainer(config, init_model_weights(config, 3, at::TensorOptions()), options,
                         offload);
  CHECK(trainer.plan().states_in_cpu == expect_states_in_cpu);
  const TrainResult got = trainer.train(data.split.first, data.split.second);
  REQUIRE(got.losses.size() == want.losses.size());
  for (std::size_t i = 0; i < want.losses.size(); ++i) {
    INFO("step " << i + 1 << ": offloaded " << got.losses[i] << ", in memory " << want.losses[i]);
    CHECK(got.losses[i] == want.losses[i]);
  }
  REQUIRE(got.val_losses.size() == want.val_losses.size());
  for (std::size_t i = 0; i < want.val_losses.size(); ++i)
    CHECK(got.val_losses[i].second == want.val_losses[i].second);
  CHECK(want.losses.back() < want.losses.front() - 0.1);  // it trained
  const ModelWeights master = trainer.read_master();
  INFO("max relative difference " << offload_test::max_relative_difference(master,
                                                                           reference.master()));
  CHECK(bitwise_equal(master, reference.master()));
  return trainer.stats();
}

OffloadOptions store_options(const std::string& name, std::uint64_t cpu_bytes) {
  return offload_test::striped_store_options(fuyou_test::fresh_dir(name), cpu_bytes);
}

}  // namespace

TEST_CASE("a Llama block's tensors, units and parameters follow the family") {
  const ModelConfig llama = tiny_llama(false), qwen = tiny_llama(true);
  CHECK(block_tensor_count(llama) == 9);
  CHECK(block_tensor_count(qwen) == 12);
  CHECK(block_tensor_name(llama, 1) == "self_attn.q_proj.weight");
  CHECK(block_tensor_shape(llama, 2) == std::vector<std::int64_t>{32, 64});  // k: 2 heads of 16
  CHECK(block_tensor_name(qwen, 5) == "self_attn.k_proj.bias");
  // Units: the embedding; the blocks; the norm with the untied head (tied: the norm alone).
  CHECK(unit_params(llama, 0) == 256 * 64);
  CHECK(unit_params(llama, 4) == 64 + 256 * 64);
  CHECK(unit_params(qwen, 4) == 64);
  std::int64_t total = 0;
  for (std::int64_t u = 0; u < unit_count(llama); ++u) total += unit_params(llama, u);
  CHECK(total == llama.param_count());
  const ModelWeights w = init_model_weights(llama, 1, at::TensorOptions());
  CHECK(w.numel() == llama.param_count());
  CHECK(w.named().back().first == "lm_head.weight");
  CHECK(weight_decays("model.layers.0.mlp.down_proj.weight"));
  CHECK_FALSE(weight_decays("model.layers.0.input_layernorm.weight"));
  CHECK_FALSE(weight_decays("model.layers.0.self_attn.q_proj.bias"));
  CHECK_FALSE(weight_decays("model.norm.weight"));
  CHECK(weight_decays("lm_head.weight"));
}

TEST_CASE("Llama offloaded, states in the store, overlapped updates: in-memory bit for bit") {
  TrainOptions options = small_options();
  options.grad_clip = 0;
  const ModelConfig config = tiny_llama(false);
  const OffloadStats stats = compare(config, options, store_options("llama-store", 900 << 10),
                                     /*expect_states_in_cpu=*/false);
  CHECK(stats.ssd_read_bytes == 12 * state_bytes(config));
  CHECK(stats.ssd_write_bytes == 12 * state_bytes(config));
}

TEST_CASE("Qwen2 blocks streamed through two slots, inputs in the store, K = 2 + clipping") {
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  options.accum = 2;
  const ModelConfig config = tiny_llama(true);
  OffloadOptions offload = store_options("qwen-stream", 64 << 20);
  offload.budgets.compute_bytes = budget_for_two_slots(config, options, offload, true);
  const OffloadPlan plan = plan_offload_run(config, options, offload);
  CHECK(plan.stream_slots == 2);
  CHECK(plan.inputs_in_store);
  CHECK(plan.pieces_per_block == 1);
  const OffloadStats stats = compare(config, options, offload, /*expect_states_in_cpu=*/true);
  CHECK(stats.stream_read_bytes > 0);
}

TEST_CASE("a Llama run stopped after step 6 resumes to the uninterrupted weights") {
  const Data data;
  TrainOptions options = small_options();
  options.grad_clip = 1.0;
  const ModelConfig config = tiny_llama(false);
  InMemoryTrainer reference(config, init_model_weights(config, 3, at::TensorOptions()), options);
  const TrainResult want = reference.train(data.split.first, data.split.second);
  OffloadOptions offload = store_options("llama-resume", 900 << 10);
  {
    OffloadTrainer first(config, init_model_weights(config, 3, at::TensorOptions()), options,
                         offload);
    offload_test::train_and_stop_after(first, data.split.first, data.split.second, 6);
  }
  offload.resume = true;
  OffloadTrainer second(config, ModelWeights{}, options, offload);
  CHECK(second.first_step() == 7);
  const TrainResult got = second.train(data.split.first, data.split.second);
  REQUIRE(got.losses.size() == 6);
  for (std::size_t i = 0; i < got.losses.size(); ++i) CHECK(got.losses[i] == want.losses[6 + i]);
  CHECK(bitwise_equal(second.read_master(), reference.master()));
}

// Pieces (model_config.h: LlamaBlockPiece): here the largest is attention in (64 + 64 · (64 + 32
// + 32) = 8,256 floats; gate 6,208, up and down 6,144; a whole block is 30,848), two slots of it
// in the compute tier with the block gradients leaving piece by piece; the backward's pieces are
// llama_block_backward's own arithmetic.
TEST_CASE(
    "Llama blocks streamed in five pieces, states in the store, K = 2: in-memory bit for bit") {
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  options.accum = 2;
  const ModelConfig config = tiny_llama(false);
  REQUIRE(config.max_block_piece_param_count() == 8256);
  CHECK(config.block_param_count() == 30848);
  std::int64_t sum = 0;
  for (int p = 0; p < config.block_piece_count(); ++p) sum += config.block_piece_param_count(p);
  CHECK(sum == config.block_param_count());
  OffloadOptions offload = store_options("llama-pieces", 1200 << 10);
  offload.budgets.compute_bytes = 0;
  const std::uint64_t resident = plan_offload_run(config, options, offload).compute_total;
  offload.budgets.compute_bytes = resident - 1;
  offload.pieces_per_block = kLlamaBlockPieces;
  const OffloadPlan many = plan_offload_run(config, options, offload);
  REQUIRE(many.pieces_per_block == kLlamaBlockPieces);
  offload.budgets.compute_bytes =
      many.compute_total - 4ull * 8256 * static_cast<std::uint64_t>(many.stream_slots - 2);
  offload.pieces_per_block = 0;  // the planner's choice: whole blocks do not fit, pieces do
  const OffloadPlan plan = plan_offload_run(config, options, offload);
  INFO(plan.describe());
  CHECK(plan.pieces_per_block == kLlamaBlockPieces);
  CHECK(plan.stream_slots == 2);
  const OffloadStats stats = compare(config, options, offload, /*expect_states_in_cpu=*/false);
  CHECK(stats.stream_read_bytes > 0);
}

TEST_CASE("what Llama blocks cannot do yet is refused before a store is made") {
  const ModelConfig config = tiny_llama(false);
  TrainOptions options = small_options();
  OffloadOptions offload = store_options("llama-refused", 64 << 20);
  offload.activations = parse_activation_request("keep-all", config.n_layer);
  CHECK_THROWS_AS(plan_offload_run(config, options, offload), sparsetrain::common::UsageError);
  offload.activations = parse_activation_request("auto", config.n_layer);
  const OffloadPlan plan = plan_offload_run(config, options, offload);
  CHECK(plan.activations.mode == "auto");
  for (const ActivationSet& set : plan.activations.kept) CHECK(set.empty());
  offload.pieces_per_block = kGpt2BlockPieces;  // not a Llama block's count
  CHECK_THROWS_AS(plan_offload_run(config, options, offload), sparsetrain::common::UsageError);
}
