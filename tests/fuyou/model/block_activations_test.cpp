// What a block keeps for its backward (block_activations.h, gpt_model.h): every kept set, whole or
// in pieces, kept as made or copied to contiguous memory (as CPU memory and the store hold them),
// gives the bits of recomputing everything; the recompute reads only the pieces it needs; the
// list syntax and the recompute FLOPs (against a count of the block's matmuls).
#include "fuyou/model/block_activations.h"

#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/error.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/model/model_weights.h"

using namespace sparsetrain::fuyou;

namespace {

ModelWeights perturbed_weights(const ModelConfig& config, std::uint64_t seed) {
  ModelWeights w = init_model_weights(config, seed, at::TensorOptions());
  torch::manual_seed(seed + 1);
  for (auto& [name, t] : w.named()) t->add_(torch::randn_like(*t) * 0.05);
  return w;
}

// Every subset of the seven activations, in order of their bits.
std::vector<ActivationSet> every_set() {
  std::vector<ActivationSet> sets;
  for (std::uint32_t bits = 0; bits < (1u << kBlockActivations); ++bits) {
    ActivationSet set;
    for (int a = 0; a < kBlockActivations; ++a) {
      if ((bits >> a) & 1u) set = set.with(a);
    }
    sets.push_back(set);
  }
  return sets;
}

// The kept tensors copied into fresh contiguous memory (the CPU and store shelves' round trip).
BlockActivations copied(const BlockActivations& kept) {
  BlockActivations out{kept.set, {}};
  for (int a = 0; a < kBlockActivations; ++a) {
    for (const at::Tensor& t : kept.tensors[a]) out.tensors[a].push_back(t.contiguous().clone());
  }
  return out;
}

// Records which pieces were acquired (every piece's weights from one block).
class RecordingSource final : public BlockPieceSource {
 public:
  explicit RecordingSource(const BlockWeights& block) : block_(block) {}
  const BlockWeights& acquire(int piece) override {
    order.push_back(piece);
    return block_;
  }
  std::vector<int> order;

 private:
  const BlockWeights& block_;
};

}  // namespace

TEST_CASE("every kept set gives the bits of recomputing the whole block, kept or copied") {
  const ModelConfig config = model_config_from_name("custom:L=1,C=32,H=4,V=16,T=8");
  const ModelWeights w = perturbed_weights(config, 41);
  torch::manual_seed(42);
  const at::Tensor x = torch::randn({2, 8, 32});
  const at::Tensor dz = torch::randn({2, 8, 32});
  const BlockGrads want = block_backward(config, w.blocks[0], x, dz);
  for (const ActivationSet& set : every_set()) {
    CAPTURE(set.to_string());
    BlockActivations kept;
    at::Tensor z;
    {
      torch::NoGradGuard no_grad;
      z = block_forward(config, w.blocks[0], x, set, &kept);
    }
    CHECK(at::equal(z, block_forward(config, w.blocks[0], x)));  // keeping changes no output
    for (const BlockActivations& given : {kept, copied(kept)}) {
      const BlockGrads got = block_backward(config, w.blocks[0], x, dz, given);
      CHECK(at::equal(got.input_grad, want.input_grad));
      for (int i = 0; i < kBlockTensorCount; ++i) {
        CAPTURE(gpt2_block_tensor_name(i));
        CHECK(at::equal(got.weight_grads[i], want.weight_grads[i]));
      }
    }
  }
}

TEST_CASE("in pieces, the recompute acquires only the pieces whose weights it reads") {
  const ModelConfig config = model_config_from_name("custom:L=1,C=16,H=2,V=16,T=8");
  const ModelWeights w = perturbed_weights(config, 51);
  torch::manual_seed(52);
  const at::Tensor x = torch::randn({1, 8, 16});
  const at::Tensor dz = torch::randn({1, 8, 16});
  const BlockGrads want = block_backward(config, w.blocks[0], x, dz);
  for (const ActivationSet& set : every_set()) {
    CAPTURE(set.to_string());
    RecordingSource source(w.blocks[0]);
    BlockActivations kept;
    {
      torch::NoGradGuard no_grad;
      block_forward_pieces(config, source, x, set, &kept);
    }
    source.order.clear();
    BlockWeights grads;
    const at::Tensor dx =
        block_backward_pieces(config, source, x, dz, kept, [&](int p, const BlockWeights& g) {
          const TensorRange r = block_piece_tensors(config, p);
          for (int i = r.first; i < r.last; ++i) grads[i] = g[i];
        });
    std::vector<int> expected;
    const PieceFlags reads = recompute_pieces(config, set);
    for (int p = 0; p < kGpt2BlockPieces; ++p) {
      if (reads[static_cast<std::size_t>(p)]) expected.push_back(p);
    }
    for (int p = kGpt2BlockPieces; p-- > 0;) expected.push_back(p);
    CHECK(source.order == expected);
    CHECK(at::equal(dx, want.input_grad));
    for (int i = 0; i < kBlockTensorCount; ++i) CHECK(at::equal(grads[i], want.weight_grads[i]));
  }
  // Hand-checked ends: nothing kept reads pieces 0-2; everything that needs weights kept, none.
  CHECK(recompute_pieces(config, {}) == PieceFlags{true, true, true, false, false});
  const ActivationSet weighted = parse_activation_set("ln1,qkv,resid,ln2,fc");
  CHECK(recompute_pieces(config, weighted) == PieceFlags{});
}

TEST_CASE("kept tensors have the shapes activation_shapes names, and the floats it counts") {
  const ModelConfig config = model_config_from_name("custom:L=1,C=16,H=2,V=16,T=8");
  const ModelWeights w = perturbed_weights(config, 61);
  const at::Tensor x = torch::randn({3, 5, 16});
  BlockActivations kept;
  {
    torch::NoGradGuard no_grad;
    block_forward(config, w.blocks[0], x, ActivationSet::all(), &kept);
  }
  for (int a = 0; a < kBlockActivations; ++a) {
    CAPTURE(block_activation_name(a));
    const auto shapes = activation_shapes(config, a, 3, 5, /*cuda=*/false);
    REQUIRE(kept.tensors[a].size() == shapes.size());
    std::int64_t numel = 0;
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      CHECK(kept.tensors[a][i].sizes() == at::IntArrayRef(shapes[i]));
      numel += kept.tensors[a][i].numel();
    }
    CHECK(numel == 15 * activation_floats_per_token(config, a, /*cuda=*/false));
  }
  // A kept set that lacks a tensor is refused, not read past.
  kept.tensors[kQkv].clear();
  CHECK_THROWS(block_backward(config, w.blocks[0], x, torch::randn({3, 5, 16}), kept));
}

TEST_CASE("activation lists parse by name and refuse unknown or repeated names") {
  CHECK(parse_activation_set("attn,fc").to_string() == "attn,fc");
  CHECK(parse_activation_set("fc,attn") == parse_activation_set("attn,fc"));
  CHECK(parse_activation_set("all") == ActivationSet::all());
  CHECK(parse_activation_set("none").empty());
  CHECK(ActivationSet::all().count() == kBlockActivations);
  CHECK(ActivationSet::all().to_string() == "ln1,qkv,attn,resid,ln2,fc,gelu");
  for (const char* bad : {"", "attn,", "atn", "fc,fc", ",fc"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_activation_set(bad), sparsetrain::common::UsageError);
  }
  try {
    parse_activation_set("attn,mlp");
    FAIL("accepted an unknown name");
  } catch (const sparsetrain::common::UsageError& e) {
    CHECK(std::string(e.what()).find("'mlp'") != std::string::npos);
  }
}

TEST_CASE("the recompute's FLOPs are the missing tensors' matmuls") {
  const ModelConfig c = model_config_from_name("custom:L=3,C=64,H=4,V=16,T=256");
  const double cc = 64.0 * 64.0, t = 128;
  // qkv: [T, C] x [C, 3C] = 2·3·C² per token; proj 2·C²; fc 2·4·C²; attention QKᵀ and AV 2·2·C·T.
  CHECK(block_recompute_flops_per_token(c, 128, {}, false) ==
        doctest::Approx(16 * cc + 4 * 64 * t));
  CHECK(block_recompute_flops_per_token(c, 128, ActivationSet::all(), false) == 0);
  CHECK(block_recompute_flops_per_token(c, 128, parse_activation_set("attn,fc"), false) ==
        doctest::Approx(8 * cc));
  // CUDA's attention backward records the attention's forward once more, whatever is kept.
  CHECK(block_recompute_flops_per_token(c, 128, ActivationSet::all(), true) ==
        doctest::Approx(4 * 64 * t));
  CHECK(block_recompute_flops_per_token(c, 128, {}, true) ==
        doctest::Approx(16 * cc + 2 * 4 * 64 * t));
  CHECK(c.train_flops_per_token_recompute(128) ==
        doctest::Approx(c.train_flops_per_token(128) +
                        3 * block_recompute_flops_per_token(c, 128, {}, false)));
}
