// Our GPT against Hugging Face `transformers` (the reference for GPT-2 semantics): a random small
// GPT2LMHeadModel saved by save_pretrained loads through load_hf_gpt2 and gives the loss and the
// gradients transformers computed. Skips (77) without the venv's Python or transformers.
#define DOCTEST_CONFIG_IMPLEMENT
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/process.h"
#include "common/error.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/model/hf_gpt2.h"

using namespace sparsetrain::fuyou;
namespace fs = std::filesystem;

namespace {

fs::path g_dir;
nlohmann::json g_reference;

at::Tensor to_tensor(const nlohmann::json& rows) {
  std::vector<std::int64_t> flat;
  for (const auto& row : rows)
    for (const auto& v : row) flat.push_back(v.get<std::int64_t>());
  return torch::tensor(flat, torch::kLong).view({static_cast<std::int64_t>(rows.size()), -1});
}

}  // namespace

TEST_CASE("a transformers GPT2LMHeadModel loads and gives its loss and gradients") {
  const ModelConfig config = model_config_from_name("custom:L=2,C=32,H=4,V=64,T=16");
  const ModelWeights w =
      load_hf_gpt2(config, (g_dir / "model.safetensors").string(), at::TensorOptions());
  const at::Tensor x = to_tensor(g_reference["inputs"]);
  const at::Tensor y = to_tensor(g_reference["targets"]);
  ModelWeights grads = zeros_like_weights(w, at::TensorOptions());
  const double loss = gpt_forward_backward(config, w, x, y, 1.0, grads, /*chunk_rows=*/7);
  const double expected = g_reference["loss"].get<double>();
  MESSAGE("loss: ours " << loss << ", transformers " << expected);
  CHECK(loss == doctest::Approx(expected).epsilon(1e-5));

  // Gradient norms (Conv1D gradients are transposes of ours: same norm).
  std::map<std::string, at::Tensor> ours;
  for (const auto& [name, t] : grads.named()) ours["transformer." + name] = *t;
  for (const auto& [name, norm] : g_reference["grad_norms"].items()) {
    CAPTURE(name);
    const double got = ours.at(name).to(at::kDouble).norm().item<double>();
    CHECK(got == doctest::Approx(norm.get<double>()).epsilon(1e-4));
  }
}

TEST_CASE("a loss mask gives transformers' loss and gradients for labels -100") {
  // transformers shifts the labels inside (labels[:, 1:] against logits[:, :-1]) and averages
  // over those not -100; ours are the shifted targets with kIgnoredTarget, the last one masked.
  const ModelConfig config = model_config_from_name("custom:L=2,C=32,H=4,V=64,T=16");
  const ModelWeights w =
      load_hf_gpt2(config, (g_dir / "model.safetensors").string(), at::TensorOptions());
  const at::Tensor x = to_tensor(g_reference["inputs"]);
  const at::Tensor y = to_tensor(g_reference["masked_targets"]);
  ModelWeights grads = zeros_like_weights(w, at::TensorOptions());
  const double loss = gpt_forward_backward(config, w, x, y, 1.0, grads, /*chunk_rows=*/7);
  const double expected = g_reference["masked_loss"].get<double>();
  MESSAGE("masked loss: ours " << loss << ", transformers " << expected);
  CHECK(loss == doctest::Approx(expected).epsilon(1e-5));
  CHECK(expected != doctest::Approx(g_reference["loss"].get<double>()).epsilon(1e-4));
  std::map<std::string, at::Tensor> ours;
  for (const auto& [name, t] : grads.named()) ours["transformer." + name] = *t;
  for (const auto& [name, norm] : g_reference["masked_grad_norms"].items()) {
    CAPTURE(name);
    const double got = ours.at(name).to(at::kDouble).norm().item<double>();
    CHECK(got == doctest::Approx(norm.get<double>()).epsilon(1e-4));
  }
}

TEST_CASE(
    "the same checkpoint read tensor by tensor gives the same weights, checked the same way") {
  const ModelConfig config = model_config_from_name("custom:L=2,C=32,H=4,V=64,T=16");
  const std::string path = (g_dir / "model.safetensors").string();
  ModelWeights whole = load_hf_gpt2(config, path, at::TensorOptions());
  auto want = whole.named();
  std::size_t next = 0;
  for_each_hf_gpt2_weight(config, path, [&](const std::string& name, const at::Tensor& t) {
    REQUIRE(next < want.size());
    CHECK(name == want[next].first);
    CHECK((t.scalar_type() == at::ScalarType::Float));
    CHECK(t.is_contiguous());
    CHECK(at::equal(t, *want[next].second));
    ++next;
  });
  CHECK(next == want.size());

  // A checkpoint without one tensor, with an unknown one, or with an untied head: refused before
  // the first tensor is visited, with load_hf_gpt2's words.
  auto refused = [&](const TensorMap& tensors, const std::string& words) {
    const std::string bad = (g_dir / "bad.safetensors").string();
    write_safetensors(bad, tensors);
    int visited = 0;
    try {
      for_each_hf_gpt2_weight(config, bad,
                              [&](const std::string&, const at::Tensor&) { ++visited; });
      FAIL("accepted a checkpoint that " << words);
    } catch (const sparsetrain::common::UsageError& e) {
      CHECK(std::string(e.what()).find(words) != std::string::npos);
    }
    CHECK(visited == 0);
  };
  TensorMap tensors = gpt_weights_to_hf(whole, at::kFloat);
  TensorMap missing = tensors;
  missing.erase("transformer.h.1.mlp.c_fc.bias");
  refused(missing, "checkpoint lacks tensor 'h.1.mlp.c_fc.bias'");
  TensorMap unknown = tensors;
  unknown["transformer.h.7.mlp.c_fc.bias"] = at::zeros({128});
  refused(unknown, "'transformer.h.7.mlp.c_fc.bias' is not part of model");
  TensorMap untied = tensors;
  untied["lm_head.weight"] = at::zeros({64, 32});
  refused(untied, "lm_head.weight differs from wte.weight");
  TensorMap misshaped = tensors;
  misshaped["transformer.wpe.weight"] = at::zeros({8, 32});
  refused(misshaped, "weight 'wpe.weight' has shape [8, 32]");
}

int main(int argc, char** argv) {
  g_dir = fs::temp_directory_path() / ("st-hf-" + std::to_string(::getpid()));
  fs::create_directories(g_dir);
  const auto r =
      sparsetrain::test::run_process(SPARSETRAIN_PYTHON, {SPARSETRAIN_HF_SCRIPT, g_dir.string()});
  if (r.exit_code != 0) {
    std::printf("transformers reference unavailable (exit %d): skipping\n%s", r.exit_code,
                r.err.c_str());
    fs::remove_all(g_dir);
    return 77;
  }
  std::ifstream in(g_dir / "reference.json");
  g_reference = nlohmann::json::parse(in);
  doctest::Context context(argc, argv);
  const int rc = context.run();
  fs::remove_all(g_dir);
  return rc;
}
