// The GPT computation: a block against a hand-written attention/MLP, block-wise recompute against
// one autograd graph over the whole model, and the chunked LM loss against full cross-entropy.
#include "fuyou/model/gpt_model.h"

#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cmath>

#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/model/token_data.h"

using namespace sparsetrain::fuyou;

namespace {

// Relative error ||a - b|| / ||b|| in double.
double rel_error(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor a64 = a.to(at::kCPU, at::kDouble), b64 = b.to(at::kCPU, at::kDouble);
  return ((a64 - b64).norm() / b64.norm().clamp_min(1e-30)).item<double>();
}

// Initialised weights with every tensor perturbed, so LayerNorm parameters and biases are not the
// trivial 1/0 and their gradients are exercised.
ModelWeights random_weights(const ModelConfig& config, std::uint64_t seed) {
  ModelWeights w = init_model_weights(config, seed, at::TensorOptions());
  torch::manual_seed(seed + 1);
  for (auto& [name, t] : w.named()) t->add_(torch::randn_like(*t) * 0.05);
  return w;
}

std::pair<at::Tensor, at::Tensor> random_tokens(const ModelConfig& config, std::int64_t b,
                                                std::int64_t t, std::uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::randint(config.vocab, {b, t}, torch::kLong),
          torch::randint(config.vocab, {b, t}, torch::kLong)};
}

}  // namespace

TEST_CASE(
    "a block equals a hand-written pre-LN block with masked softmax attention and tanh GELU") {
  const ModelConfig config = model_config_from_name("custom:L=1,C=16,H=4,V=32,T=8");
  const ModelWeights w = random_weights(config, 3);
  const BlockWeights& b = w.blocks[0];
  torch::manual_seed(4);
  const at::Tensor x = torch::randn({2, 8, 16});

  // Reference written out from the GPT-2 paper/code, independent of block_forward.
  auto ln = [](const at::Tensor& v, const at::Tensor& g, const at::Tensor& beta) {
    const at::Tensor mean = v.mean(-1, true);
    const at::Tensor var = (v - mean).pow(2).mean(-1, true);
    return (v - mean) / torch::sqrt(var + 1e-5) * g + beta;
  };
  at::Tensor h = ln(x, b[kLn1Weight], b[kLn1Bias]);
  at::Tensor qkv = torch::matmul(h, b[kAttnQkvWeight].t()) + b[kAttnQkvBias];
  std::vector<at::Tensor> heads;
  for (std::int64_t head = 0; head < 4; ++head) {
    const at::Tensor q = qkv.slice(2, head * 4, head * 4 + 4);
    const at::Tensor k = qkv.slice(2, 16 + head * 4, 16 + head * 4 + 4);
    const at::Tensor v = qkv.slice(2, 32 + head * 4, 32 + head * 4 + 4);
    at::Tensor scores = torch::matmul(q, k.transpose(1, 2)) / 2.0;  // sqrt(head_dim 4)
    const at::Tensor future = torch::ones({8, 8}, torch::kBool).triu(1);
    scores = scores.masked_fill(future, -INFINITY);
    heads.push_back(torch::matmul(torch::softmax(scores, -1), v));
  }
  at::Tensor y = x + torch::matmul(torch::cat(heads, 2), b[kAttnProjWeight].t()) + b[kAttnProjBias];
  at::Tensor m =
      torch::matmul(ln(y, b[kLn2Weight], b[kLn2Bias]), b[kMlpFcWeight].t()) + b[kMlpFcBias];
  m = 0.5 * m * (1 + torch::tanh(std::sqrt(2.0 / M_PI) * (m + 0.044715 * m.pow(3))));
  const at::Tensor expected = y + torch::matmul(m, b[kMlpProjWeight].t()) + b[kMlpProjBias];

  const double err = rel_error(block_forward(config, b, x), expected);
  MESSAGE("block vs hand-written reference, relative error " << err);
  CHECK(err < 1e-5);
}

TEST_CASE("block-wise recompute gives the loss and every gradient of one autograd graph (fp32)") {
  const ModelConfig config = model_config_from_name("custom:L=3,C=32,H=4,V=64,T=16");
  const ModelWeights weights = random_weights(config, 7);
  auto [tokens, targets] = random_tokens(config, 3, 16, 8);

  // Reference: one graph over the whole model, unchunked logits, autograd backward.
  ModelWeights ref = weights_to(weights, at::TensorOptions());
  for (auto& [name, t] : ref.named()) t->requires_grad_(true);
  const at::Tensor ref_loss = gpt_loss_full_graph(config, ref, tokens, targets);
  ref_loss.backward();

  // Block-wise: forward keeps block inputs, backward recomputes; loss in chunks of 5 rows
  // (48 rows: 9 full chunks and a partial one), gradients scaled by 0.5 then doubled.
  ModelWeights grads = zeros_like_weights(weights, at::TensorOptions());
  const double loss = gpt_forward_backward(config, weights, tokens, targets, /*grad_scale=*/0.5,
                                           grads, /*chunk_rows=*/5);
  const double loss_err = std::abs(loss - ref_loss.item<double>()) / ref_loss.item<double>();
  MESSAGE("loss " << loss << " vs " << ref_loss.item<double>() << ", relative error " << loss_err);
  CHECK(loss_err <= 1e-6);

  double worst = 0;
  auto got = grads.named();
  auto want = ref.named();
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = rel_error(*got[i].second * 2.0, want[i].second->grad());
    CAPTURE(got[i].first);
    CHECK(err <= 1e-6);
    worst = std::max(worst, err);
  }
  MESSAGE("worst gradient relative error over " << got.size() << " tensors: " << worst);
}

TEST_CASE("masked targets: the loss and gradients are the mean over the others, chunk by chunk") {
  // Every third target masked (kIgnoredTarget, what a loss mask gives) and a chunk of 5 rows
  // that holds masked ones: block-wise recompute against one graph whose cross-entropy skips them
  // (ignore_index) and averages over the rest. A micro-batch masked whole: loss 0, no gradient.
  const ModelConfig config = model_config_from_name("custom:L=2,C=32,H=4,V=64,T=16");
  const ModelWeights weights = random_weights(config, 9);
  auto [tokens, targets] = random_tokens(config, 3, 16, 10);
  at::Tensor masked = targets.clone();
  masked.view(-1).slice(0, 0, masked.numel(), 3).fill_(kIgnoredTarget);
  ModelWeights ref = weights_to(weights, at::TensorOptions());
  for (auto& [name, t] : ref.named()) t->requires_grad_(true);
  const at::Tensor ref_loss = gpt_loss_full_graph(config, ref, tokens, masked);
  ref_loss.backward();
  ModelWeights grads = zeros_like_weights(weights, at::TensorOptions());
  const double loss = gpt_forward_backward(config, weights, tokens, masked, 1.0, grads, 5);
  CHECK(std::abs(loss - ref_loss.item<double>()) <= 1e-6 * ref_loss.item<double>());
  CHECK(loss != doctest::Approx(gpt_loss(config, weights, tokens, targets)).epsilon(1e-5));
  CHECK(gpt_loss(config, weights, tokens, masked, 7) == doctest::Approx(loss).epsilon(1e-7));
  auto got = grads.named();
  auto want = ref.named();
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(got[i].first);
    CHECK(rel_error(*got[i].second, want[i].second->grad()) <= 1e-6);
  }
  const at::Tensor none = at::full_like(targets, kIgnoredTarget);
  ModelWeights zero = zeros_like_weights(weights, at::TensorOptions());
  CHECK(gpt_forward_backward(config, weights, tokens, none, 1.0, zero, 5) == 0.0);
  for (const auto& [name, g] : zero.named()) {
    CAPTURE(name);
    CHECK(g->abs().max().item<double>() == 0.0);
  }
}

TEST_CASE("block_backward returns the input gradient that chains blocks") {
  // d(sum(block1(block0(x)) * r))/dx from two block_backward calls vs autograd through both.
  const ModelConfig config = model_config_from_name("custom:L=2,C=16,H=2,V=16,T=8");
  const ModelWeights w = random_weights(config, 11);
  torch::manual_seed(12);
  const at::Tensor x = torch::randn({2, 8, 16});
  const at::Tensor r = torch::randn({2, 8, 16});
  const at::Tensor x_leaf = x.clone().requires_grad_(true);
  (block_forward(config, w.blocks[1], block_forward(config, w.blocks[0], x_leaf)) * r)
      .sum()
      .backward();

  at::Tensor x1;
  {
    torch::NoGradGuard no_grad;
    x1 = block_forward(config, w.blocks[0], x);
  }
  const BlockGrads g1 = block_backward(config, w.blocks[1], x1, r);
  const BlockGrads g0 = block_backward(config, w.blocks[0], x, g1.input_grad);
  CHECK(rel_error(g0.input_grad, x_leaf.grad()) <= 1e-6);
  CHECK_FALSE(w.blocks[0][kAttnQkvWeight].requires_grad());  // weights left untouched
}

TEST_CASE("the chunked LM loss and its gradients equal full cross-entropy for any chunk size") {
  const ModelConfig config = model_config_from_name("custom:L=1,C=16,H=2,V=50,T=16");
  const ModelWeights w = random_weights(config, 21);
  torch::manual_seed(22);
  const at::Tensor x = torch::randn({3, 7, 16});
  const at::Tensor targets = torch::randint(50, {3, 7}, torch::kLong);

  // Reference: LayerNorm, full [21, 50] logits, mean cross-entropy via log_softmax + gather.
  const at::Tensor x_leaf = x.clone().requires_grad_(true);
  const at::Tensor wte_leaf = w.wte.clone().requires_grad_(true);
  const at::Tensor h = torch::layer_norm(x_leaf, {16}, w.ln_f_weight, w.ln_f_bias, 1e-5);
  const at::Tensor logp = torch::log_softmax(torch::matmul(h, wte_leaf.t()), -1);
  const at::Tensor ref = -logp.gather(2, targets.unsqueeze(2)).mean();
  ref.backward();

  for (std::int64_t chunk : {1, 4, 20, 21, 1000}) {
    CAPTURE(chunk);
    const std::int64_t vocab_slice = chunk == 1000 ? 0 : chunk;  // 0: one slice of all 50
    CHECK(lm_loss(config, w, x, targets, chunk) ==
          doctest::Approx(ref.item<double>()).epsilon(1e-6));
    at::Tensor head_grad = at::full_like(w.wte, std::nan(""));  // each row written once
    std::int64_t handed = 0;
    const LmLossBackward g = lm_loss_backward(
        config, w, x, targets, /*grad_scale=*/1.0,
        [&](std::int64_t first, const at::Tensor& rows) {
          CHECK(first == handed);
          head_grad.slice(0, first, first + rows.size(0)).copy_(rows);
          handed += rows.size(0);
        },
        chunk, vocab_slice);
    CHECK(handed == config.vocab);
    CHECK(g.loss == doctest::Approx(ref.item<double>()).epsilon(1e-6));
    CHECK(rel_error(g.input_grad, x_leaf.grad()) <= 1e-6);
    CHECK(rel_error(head_grad, wte_leaf.grad()) <= 1e-6);
  }
}

TEST_CASE("the default loss chunk keeps fp32 logits at or under 64 MiB") {
  const ModelConfig gpt2 = model_config_from_name("gpt2");
  CHECK(default_loss_chunk_rows(gpt2) * gpt2.vocab * 4 <= (64ll << 20));
  CHECK(default_loss_chunk_rows(gpt2) >= 256);
}

TEST_CASE("gpt_loss (validation path) equals the full-graph loss") {
  const ModelConfig config = model_config_from_name("custom:L=2,C=16,H=2,V=40,T=12");
  const ModelWeights w = random_weights(config, 31);
  auto [tokens, targets] = random_tokens(config, 2, 12, 32);
  torch::NoGradGuard no_grad;
  CHECK(gpt_loss(config, w, tokens, targets, 7) ==
        doctest::Approx(gpt_loss_full_graph(config, w, tokens, targets).item<double>())
            .epsilon(1e-6));
}

TEST_CASE("sequences longer than the position table are refused") {
  const ModelConfig config = model_config_from_name("custom:L=1,C=8,H=2,V=10,T=4");
  const ModelWeights w = init_model_weights(config, 0, at::TensorOptions());
  auto [tokens, targets] = random_tokens(config, 1, 5, 0);
  CHECK_THROWS(gpt_loss(config, w, tokens, targets));
}

namespace {

// Hands out one piece's tensors at a time (the others undefined, so a piece that read another's
// would fail) and records the order of acquires and releases.
class OnePieceAtATime final : public BlockPieceSource {
 public:
  explicit OnePieceAtATime(const BlockWeights& block) : block_(block) {}
  const BlockWeights& acquire(int piece) override {
    REQUIRE(held_ == -1);  // the previous piece was released
    held_ = piece;
    current_ = BlockWeights{};
    const TensorRange range = block_piece_tensors(ModelConfig{}, piece);
    for (int i = range.first; i < range.last; ++i) current_[i] = block_[i].clone();
    order.push_back(piece);
    return current_;
  }
  void release() override {
    REQUIRE(held_ != -1);
    held_ = -1;
    // The slot is reused: poisoned, so a graph still reading it would give NaN (or trip
    // autograd's version check).
    for (at::Tensor& t : current_.tensors) {
      if (t.defined()) t.fill_(NAN);
    }
    current_ = BlockWeights{};
  }
  std::vector<int> order;

 private:
  const BlockWeights& block_;
  BlockWeights current_;
  int held_ = -1;
};

}  // namespace

TEST_CASE("a block one piece's weights at a time gives block_forward's and block_backward's bits") {
  const ModelConfig config = model_config_from_name("custom:L=1,C=32,H=4,V=16,T=8");
  const ModelWeights w = random_weights(config, 31);
  torch::manual_seed(32);
  const at::Tensor x = torch::randn({2, 8, 32});
  const at::Tensor dz = torch::randn({2, 8, 32});

  OnePieceAtATime source(w.blocks[0]);
  {
    torch::NoGradGuard no_grad;
    CHECK(
        at::equal(block_forward_pieces(config, source, x), block_forward(config, w.blocks[0], x)));
    CHECK(source.order == std::vector<int>{0, 1, 2, 3});
    source.order.clear();
  }

  BlockWeights piece_grads;
  std::vector<int> taken;
  const at::Tensor dx =
      block_backward_pieces(config, source, x, dz, {}, [&](int p, const BlockWeights& g) {
        taken.push_back(p);
        const TensorRange range = block_piece_tensors(config, p);
        for (int i = 0; i < kBlockTensorCount; ++i) {
          CHECK(g[i].defined() == (i >= range.first && i < range.last));
          if (g[i].defined()) piece_grads[i] = g[i];
        }
      });
  // The recompute reads pieces 0-2 (MLP out's output is never needed), then the backward 3-0.
  CHECK(source.order == std::vector<int>{0, 1, 2, 3, 2, 1, 0});
  CHECK(taken == std::vector<int>{3, 2, 1, 0});

  const BlockGrads whole = block_backward(config, w.blocks[0], x, dz);
  CHECK(at::equal(dx, whole.input_grad));
  for (int i = 0; i < kBlockTensorCount; ++i) {
    CAPTURE(gpt2_block_tensor_name(i));
    CHECK(at::equal(piece_grads[i], whole.weight_grads[i]));
  }

  // And both are the gradients of one autograd graph over the block.
  const at::Tensor x_leaf = x.clone().requires_grad_(true);
  BlockWeights leaves;
  for (int i = 0; i < kBlockTensorCount; ++i) {
    leaves[i] = w.blocks[0][i].clone().requires_grad_(true);
  }
  (block_forward(config, leaves, x_leaf) * dz).sum().backward();
  CHECK(rel_error(dx, x_leaf.grad()) <= 1e-6);
  for (int i = 0; i < kBlockTensorCount; ++i) {
    CAPTURE(gpt2_block_tensor_name(i));
    CHECK(rel_error(whole.weight_grads[i], leaves[i].grad()) <= 1e-6);
  }
}
