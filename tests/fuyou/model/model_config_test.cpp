// Model presets: parameter counts against published figures, FLOPs per token by hand, custom specs.
#include "fuyou/model/model_config.h"

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "common/error.h"
#include "fuyou/model/hf_config.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/test_util.h"

using namespace sparsetrain::fuyou;
using sparsetrain::common::UsageError;

TEST_CASE("GPT-2 small has 124,439,808 parameters with a tied head and 1024 positions") {
  // Hugging Face's GPT2LMHeadModel("gpt2").num_parameters() with tied lm_head.
  CHECK(model_config_from_name("gpt2").param_count() == 124439808);
}

TEST_CASE("GPT-2 medium, large and xl match their published counts") {
  // Hugging Face num_parameters(): 354,823,168 / 774,030,080 / 1,557,611,200.
  CHECK(model_config_from_name("gpt2-medium").param_count() == 354823168);
  CHECK(model_config_from_name("gpt2-large").param_count() == 774030080);
  CHECK(model_config_from_name("gpt2-xl").param_count() == 1557611200);
}

TEST_CASE("GPT-3 presets are within 3% of the paper's nominal sizes") {
  const std::pair<const char*, double> nominal[] = {
      {"gpt3-125m", 125e6}, {"gpt3-350m", 350e6}, {"gpt3-760m", 760e6}, {"gpt3-1.3b", 1.3e9},
      {"gpt3-2.7b", 2.7e9}, {"gpt3-6.7b", 6.7e9}, {"gpt3-13b", 13e9},   {"gpt3-30b", 30e9},
      {"gpt3-66b", 66e9},   {"gpt3-175b", 175e9}};
  for (const auto& [name, size] : nominal) {
    const double count = static_cast<double>(model_config_from_name(name).param_count());
    CAPTURE(name);
    CAPTURE(count);
    CHECK(std::abs(count / size - 1.0) < 0.03);
  }
}

TEST_CASE("the parameter count equals the number of elements of initialised weights") {
  for (const char* name : {"tiny", "small", "custom:L=3,C=24,H=3,V=100,T=33"}) {
    const ModelConfig config = model_config_from_name(name);
    CAPTURE(name);
    CHECK(init_model_weights(config, 1, at::TensorOptions()).numel() == config.param_count());
  }
}

TEST_CASE(
    "FLOPs per token follow 6N + 12·L·C·T, plus each block's forward but its MLP out "
    "with recompute") {
  const ModelConfig c = model_config_from_name("custom:L=2,C=8,H=2,V=10,T=16");
  // Per block: LN 2·2·8 = 32, qkv 8·24 + 24 = 216, proj 64 + 8 = 72, fc 8·32 + 32 = 288,
  // fc proj 256 + 8 = 264 -> 872. N = wte 80 + 2·872 + ln_f 16 = 1840 (wpe 128 excluded).
  CHECK(c.block_param_count() == 872);
  CHECK(c.param_count() == 1840 + 128);
  CHECK(c.flops_param_count() == 1840);
  CHECK(c.train_flops_per_token(16) == doctest::Approx(6.0 * 1840 + 12.0 * 2 * 8 * 16));
  // Recomputed per block: qkv 2·8·24, proj 2·8·8, fc 2·8·32 (= 16·C²), attention 4·C·T; not the
  // MLP out projection (the next block's input is kept).
  CHECK(
      c.train_flops_per_token_recompute(16) ==
      doctest::Approx(6.0 * 1840 + 12.0 * 2 * 8 * 16 + 2 * (2.0 * 8 * (24 + 8 + 32) + 4 * 8 * 16)));
}

TEST_CASE("custom specs parse, and bad names or shapes are usage errors") {
  const ModelConfig c = model_config_from_name("custom:L=4,C=128,H=8,V=300,T=64");
  CHECK(c.n_layer == 4);
  CHECK(c.n_embd == 128);
  CHECK(c.n_head == 8);
  CHECK(c.vocab == 300);
  CHECK(c.n_positions == 64);
  CHECK_THROWS_AS(model_config_from_name("gpt5"), UsageError);
  CHECK_THROWS_AS(model_config_from_name("custom:L=4,C=130,H=8"), UsageError);  // 130 % 8
  CHECK_THROWS_AS(model_config_from_name("custom:L=4,C=128"), UsageError);      // no H
  CHECK_THROWS_AS(model_config_from_name("custom:L=4,C=12x,H=2"), UsageError);
  CHECK_THROWS_AS(model_config_from_name("custom:L=0,C=8,H=2"), UsageError);
  CHECK_THROWS_AS(model_config_from_name("custom:L=1,C=8,H=2,Q=1"), UsageError);
}

TEST_CASE(
    "a config.json number beyond double is a usage error, not an internal one (fuzz finding)") {
  // nlohmann throws out_of_range (not parse_error) for 1e455887: it escaped as exit 70.
  const auto dir = fuyou_test::fresh_dir("hf-overflow");
  fuyou_test::write_bytes(dir / "config.json",
                          R"({"architectures": ["LlamaForCausalLM"], "rms_norm_eps": 1e455887})");
  fuyou_test::check_usage_error([&] { model_config_from_hf(dir.string()); },
                                {"config.json", "is not JSON", "number overflow"});
  std::filesystem::remove_all(dir);
}
