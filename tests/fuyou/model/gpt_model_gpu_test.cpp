// Block-wise recompute on CUDA in bf16 against one autograd graph in bf16 on the same device, and
// both against the fp32 CPU graph. Skips (77) without a visible CUDA device.
//
// Tolerances (stated, relative L2 per tensor): recompute vs one bf16 graph ≤ 2e-2 — the forward is
// recomputed with the same kernels, but the tied wte gradient and the chunked loss sum in a
// different order and our accumulators are fp32; bf16 vs fp32 ≤ 5e-2 — bf16 keeps 8 mantissa bits
// (2^-8 ≈ 4e-3 per rounding) through 3 blocks of matmuls, LayerNorms and softmax.
#define DOCTEST_CONFIG_IMPLEMENT
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cstdio>

#include "fuyou/model/gpt_model.h"

using namespace sparsetrain::fuyou;

namespace {

double rel_error(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor a64 = a.to(at::kCPU, at::kDouble), b64 = b.to(at::kCPU, at::kDouble);
  return ((a64 - b64).norm() / b64.norm().clamp_min(1e-30)).item<double>();
}

}  // namespace

TEST_CASE(
    "block-wise recompute in CUDA bf16 matches one bf16 autograd graph and the fp32 CPU graph") {
  const ModelConfig config = model_config_from_name("custom:L=3,C=128,H=4,V=256,T=64");
  ModelWeights cpu = init_model_weights(config, 7, at::TensorOptions());
  torch::manual_seed(8);
  for (auto& [name, t] : cpu.named()) t->add_(torch::randn_like(*t) * 0.05);
  const at::Tensor tokens = torch::randint(config.vocab, {4, 64}, torch::kLong);
  const at::Tensor targets = torch::randint(config.vocab, {4, 64}, torch::kLong);

  ModelWeights ref32 = weights_to(cpu, at::TensorOptions());
  for (auto& [name, t] : ref32.named()) t->requires_grad_(true);
  const at::Tensor loss32 = gpt_loss_full_graph(config, ref32, tokens, targets);
  loss32.backward();

  const auto gpu16 = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  ModelWeights ref16 = weights_to(cpu, gpu16);
  for (auto& [name, t] : ref16.named()) t->requires_grad_(true);
  const at::Tensor loss16 = gpt_loss_full_graph(config, ref16, tokens.cuda(), targets.cuda());
  loss16.backward();

  const ModelWeights w16 = weights_to(cpu, gpu16);
  ModelWeights grads = zeros_like_weights(w16, gpu16.dtype(at::kFloat));
  const double loss = gpt_forward_backward(config, w16, tokens.cuda(), targets.cuda(), 1.0, grads,
                                           /*chunk_rows=*/100);
  MESSAGE("loss fp32 graph " << loss32.item<double>() << ", bf16 graph " << loss16.item<double>()
                             << ", bf16 block-wise " << loss);
  CHECK(std::abs(loss - loss16.item<double>()) / loss16.item<double>() <= 2e-2);
  CHECK(std::abs(loss - loss32.item<double>()) / loss32.item<double>() <= 5e-2);

  auto got = grads.named();
  auto want16 = ref16.named();
  auto want32 = ref32.named();
  double worst16 = 0, worst32 = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(got[i].first);
    const double e16 = rel_error(*got[i].second, want16[i].second->grad());
    const double e32 = rel_error(*got[i].second, want32[i].second->grad());
    CHECK(e16 <= 2e-2);
    CHECK(e32 <= 5e-2);
    worst16 = std::max(worst16, e16);
    worst32 = std::max(worst32, e32);
  }
  MESSAGE("worst gradient relative error: vs bf16 graph " << worst16 << ", vs fp32 graph "
                                                          << worst32);
}

int main(int argc, char** argv) {
  if (!torch::cuda::is_available()) {
    std::printf("no CUDA device visible: skipping\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
