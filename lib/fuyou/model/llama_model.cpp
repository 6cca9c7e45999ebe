// The Llama family's decoder (see llama_model.h).
#include "fuyou/model/llama_model.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "fuyou/model/safetensors.h"
#include "fuyou/model/token_data.h"

namespace sparsetrain::fuyou {

namespace fs = std::filesystem;

namespace {

constexpr double kPi = 3.14159265358979323846;

// [..., d] -> [-x2, x1] for halves x1, x2 (transformers' rotate_half).
at::Tensor rotate_half(const at::Tensor& x) {
  const std::int64_t half = x.size(-1) / 2;
  return at::cat({-x.slice(-1, half), x.slice(-1, 0, half)}, -1);
}

// cos, sin [T, d] for positions 0 … T-1, in `dtype` (computed in fp32).
std::pair<at::Tensor, at::Tensor> rotary_tables(const ModelConfig& config, std::int64_t t,
                                                at::ScalarType dtype, const at::Device& device) {
  const at::Tensor inv_freq = rope_inverse_frequencies(config).to(device);
  const at::Tensor positions = at::arange(t, at::TensorOptions().dtype(at::kFloat).device(device));
  const at::Tensor freqs = at::outer(positions, inv_freq);  // [T, d/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1);       // [T, d]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

// Where each tensor of a block sits in llama_block_tensors' order.
struct BlockLayout {
  int ln1 = 0, q = 1, k = 2, v = 3, q_bias = -1, k_bias = -1, v_bias = -1, o = 4, ln2 = 5, gate = 6,
      up = 7, down = 8;
};
BlockLayout block_layout(const ModelConfig& config) {
  BlockLayout at;
  if (config.qkv_bias) {
    at.q_bias = 4;
    at.k_bias = 5;
    at.v_bias = 6;
    at.o = 7;
    at.ln2 = 8;
    at.gate = 9;
    at.up = 10;
    at.down = 11;
  }
  return at;
}

at::Tensor project(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b = {}) {
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

}  // namespace

at::Tensor llama_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

namespace {

// A checkpoint's tensors, checked from its index and headers: where each of ours is.
struct CheckpointIndex {
  std::map<std::string, std::string> file_of;  // our tensor name -> its shard
};

CheckpointIndex index_checkpoint(const ModelConfig& config, const std::string& model_dir) {
  ST_ASSERT(config.llama(), "a Llama checkpoint for model '" + config.name + "', not Llama-family");
  const fs::path dir(model_dir);
  const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  const std::string hint =
      "pass the model directory the checkpoint was saved to (config.json, "
      "model.safetensors or its shards and index)";
  // Tensor name -> the shard file that holds it.
  std::map<std::string, std::string> where;
  if (fs::is_regular_file(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw common::UsageError("checkpoint index '" + index.string() + "' is not JSON: " + e.what(),
                               hint);
    }
    if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object()) {
      throw common::UsageError("checkpoint index '" + index.string() + "' has no weight_map", hint);
    }
    for (const auto& [name, file] : j.at("weight_map").items()) {
      if (!file.is_string()) {
        throw common::UsageError("checkpoint index '" + index.string() + "' maps '" + name +
                                     "' to " + file.dump() + ", not a file name",
                                 hint);
      }
      const fs::path shard = dir / file.get<std::string>();
      if (!fs::is_regular_file(shard)) {
        throw common::UsageError("checkpoint index '" + index.string() + "' maps '" + name +
                                     "' to shard '" + shard.string() + "', which is not there",
                                 "download every shard the index names");
      }
      where[name] = shard.string();
    }
  } else if (fs::is_regular_file(single)) {
    const SafetensorsReader reader(single.string());  // alive while its tensors() are read
    for (const auto& info : reader.tensors()) {
      where[info.name] = single.string();
    }
  } else {
    throw common::UsageError(
        "no model.safetensors or model.safetensors.index.json in '" + dir.string() + "'", hint);
  }

  // What must be there, with its shape: every tensor of ours.
  std::map<std::string, std::vector<std::int64_t>> wanted;
  {
    ModelWeights shapes = empty_weights(config);
    const std::vector<BlockTensorSpec> specs = block_tensors(config);
    for (BlockWeights& block : shapes.blocks) {
      for (std::size_t j = 0; j < specs.size(); ++j)
        block.tensors[j] = at::empty(specs[j].shape, at::TensorOptions().device(at::kMeta));
    }
    const auto vc = at::TensorOptions().device(at::kMeta);
    shapes.wte = at::empty({config.vocab, config.n_embd}, vc);
    shapes.ln_f_weight = at::empty({config.n_embd}, vc);
    if (!config.tie_word_embeddings) shapes.lm_head = at::empty({config.vocab, config.n_embd}, vc);
    for (const auto& [name, t] : shapes.named()) wanted[name] = t->sizes().vec();
  }
  for (const auto& [name, file] : where) {
    const bool rotary_buffer = name.size() > 9 && name.rfind(".inv_freq") == name.size() - 9;
    const bool tied_head = name == "lm_head.weight" && config.tie_word_embeddings;
    if (!wanted.count(name) && !rotary_buffer && !tied_head) {
      throw common::UsageError("checkpoint tensor '" + name + "' (in '" + file +
                                   "') is not part of model '" + config.name + "'",
                               "check that config.json belongs to these weights");
    }
  }
  CheckpointIndex out;
  for (const auto& [name, shape] : wanted) {
    if (!where.count(name)) {
      throw common::UsageError("checkpoint in '" + dir.string() + "' lacks tensor '" + name + "'",
                               hint);
    }
    out.file_of[name] = where.at(name);
  }
  // Shapes from the headers (each shard's header read once; read_safetensors' dtype and layout
  // checks run as it opens).
  std::map<std::string, std::vector<std::string>> by_file;
  for (const auto& [name, file] : out.file_of) by_file[file].push_back(name);
  for (const auto& [file, names] : by_file) {
    const SafetensorsReader reader(file);
    std::map<std::string, std::vector<std::int64_t>> shape_in_file;
    for (const auto& info : reader.tensors()) shape_in_file[info.name] = info.shape;
    for (const std::string& name : names) {
      if (!shape_in_file.count(name)) {
        throw common::UsageError(
            "checkpoint index maps '" + name + "' to '" + file + "', which does not hold it",
            "download the checkpoint again: its index and shards disagree");
      }
      const std::vector<std::int64_t>& shape = shape_in_file.at(name);
      if (shape != wanted.at(name)) {
        throw common::UsageError("checkpoint tensor '" + name + "' (in '" + file + "') has shape " +
                                     c10::str(at::IntArrayRef(shape)) + " but model '" +
                                     config.name + "' needs " +
                                     c10::str(at::IntArrayRef(wanted.at(name))),
                                 "check that config.json belongs to these weights");
      }
    }
  }
  return out;
}

}  // namespace

void check_hf_llama(const ModelConfig& config, const std::string& model_dir) {
  index_checkpoint(config, model_dir);
}

void for_each_hf_llama_weight(const ModelConfig& config, const std::string& model_dir,
                              const WeightVisitor& visit) {
  const CheckpointIndex index = index_checkpoint(config, model_dir);
  std::map<std::string, std::unique_ptr<SafetensorsReader>> readers;  // by shard, opened once
  for (const std::string& name : weight_names(config)) {
    const std::string& file = index.file_of.at(name);
    auto& reader = readers[file];
    if (!reader) reader = std::make_unique<SafetensorsReader>(file);
    finite_weights_only(file, visit)(name, reader->read(name).to(at::kFloat).contiguous());
  }
}

ModelWeights load_hf_llama(const ModelConfig& config, const std::string& model_dir,
                           const c10::TensorOptions& options) {
  return collect_weights(config, [&](const WeightVisitor& visit) {
    for_each_hf_llama_weight(config, model_dir, [&](const std::string& name, const at::Tensor& t) {
      visit(name, t.to(options, /*non_blocking=*/false, /*copy=*/true).contiguous());
    });
  });
}

at::Tensor rope_inverse_frequencies(const ModelConfig& config) {
  const std::int64_t d = config.head_dim();
  // 1 / theta^(2i/d), the exponent in fp32 as transformers does (int64 arange -> float / dim).
  const at::Tensor exponent =
      at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d);
  at::Tensor inv_freq = 1.0 / at::pow(config.rope_theta, exponent);
  const RopeScaling& s = config.rope_scaling;
  if (s.type == "linear") return inv_freq / s.factor;
  if (s.type != "llama3") return inv_freq;
  const double old_context = static_cast<double>(s.original_max_positions);
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  const at::Tensor wavelen = 2 * kPi / inv_freq;
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  const at::Tensor smooth =
      (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  const at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  const at::Tensor medium =
      (wavelen < high_freq_wavelen).logical_not() & (wavelen > low_freq_wavelen).logical_not();
  return at::where(medium, smoothed, scaled);
}

namespace {

at::Tensor bias_of(const BlockWeights& w, int index) {
  return index >= 0 ? w[index] : at::Tensor();
}

// Piece 0 up to the attention: n1 = RMSNorm(x) [B, T, C] and q [B, H, T, d], k and v [B, KV, T, d]
// before the rotary embedding.
struct AttentionInputs {
  at::Tensor n1, q, k, v;
};
AttentionInputs attention_inputs(const ModelConfig& config, const BlockLayout& at,
                                 const BlockWeights& w, const at::Tensor& x) {
  const std::int64_t b = x.size(0), t = x.size(1), h = config.n_head, kvh = config.n_kv_head,
                     d = config.head_dim();
  AttentionInputs in;
  in.n1 = llama_rms_norm(x, w[at.ln1], config.layer_norm_eps);
  in.q = project(in.n1, w[at.q], bias_of(w, at.q_bias)).view({b, t, h, d}).transpose(1, 2);
  in.k = project(in.n1, w[at.k], bias_of(w, at.k_bias)).view({b, t, kvh, d}).transpose(1, 2);
  in.v = project(in.n1, w[at.v], bias_of(w, at.v_bias)).view({b, t, kvh, d}).transpose(1, 2);
  return in;
}

// The attention, no weights: rotary on q and k (cos, sin [T, d]), each K/V head serving
// H / KV query heads (transformers' repeat_kv), causal SDPA -> [B, T, H·d].
at::Tensor attention(const ModelConfig& config, const at::Tensor& cos, const at::Tensor& sin,
                     at::Tensor q, at::Tensor k, at::Tensor v) {
  const std::int64_t h = config.n_head, kvh = config.n_kv_head;
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  if (kvh != h) {
    k = k.repeat_interleave(h / kvh, 1);
    v = v.repeat_interleave(h / kvh, 1);
  }
  const at::Tensor a = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
  return a.transpose(1, 2).reshape({q.size(0), q.size(2), h * q.size(3)});
}

// Every tensor the block's backward reads, recomputed from its input x.
struct Internals {
  at::Tensor x, n1;            // [B, T, C]
  at::Tensor q, k, v;          // leaves of the attention's graph (before the rotary)
  at::Tensor attn;             // [B, T, H·d]: that graph's output
  at::Tensor hidden, n2;       // [B, T, C]: after the attention's residual add; RMSNorm of it
  at::Tensor gate, up, mixed;  // [B, T, I]: gate(n2), up(n2), silu(gate) · up
};

// Pieces 0 … 3 (down_proj's output is the next block's input: not needed), one at a time. The
// attention's graph is recorded from leaves of q, k, v: its backward is autograd's, and it holds
// no weights, so the pieces' buffers can be reused under it.
Internals recompute(const ModelConfig& config, BlockPieceSource& source, const at::Tensor& x) {
  torch::NoGradGuard no_grad;
  const BlockLayout at = block_layout(config);
  Internals in;
  in.x = x;
  {
    AttentionInputs a = attention_inputs(config, at, source.acquire(kLlamaAttnInPiece), x);
    source.release();
    in.n1 = std::move(a.n1);
    torch::AutoGradMode enable(true);
    in.q = a.q.detach().requires_grad_(true);
    in.k = a.k.detach().requires_grad_(true);
    in.v = a.v.detach().requires_grad_(true);
    const auto [cos, sin] = rotary_tables(config, x.size(1), x.scalar_type(), x.device());
    in.attn = attention(config, cos, sin, in.q, in.k, in.v);
  }
  in.hidden = x + project(in.attn.detach(), source.acquire(kLlamaAttnOutPiece)[at.o]);
  source.release();
  {
    const BlockWeights& w = source.acquire(kLlamaGatePiece);
    in.n2 = llama_rms_norm(in.hidden, w[at.ln2], config.layer_norm_eps);
    in.gate = project(in.n2, w[at.gate]);
    source.release();
  }
  in.up = project(in.n2, source.acquire(kLlamaUpPiece)[at.up]);
  source.release();
  in.mixed = at::silu(in.gate) * in.up;
  return in;
}

// Linear backward: d(input) for g [..., out], input [..., in], weight [out, in]; the weight's
// gradient into dw, the bias's into db where db points somewhere.
at::Tensor linear_backward(const at::Tensor& g, const at::Tensor& input, const at::Tensor& weight,
                           at::Tensor& dw, at::Tensor* db = nullptr) {
  const at::Tensor g2 = g.reshape({-1, g.size(-1)});
  dw = g2.t().mm(input.reshape({-1, input.size(-1)}));
  if (db) *db = g2.sum(0);
  return g2.mm(weight).view(input.sizes());
}

// llama_rms_norm's backward for y = w · (x32 · r).to(dtype), r = rsqrt(mean(x32²) + eps):
// dw = Σ_rows g · normed; dx = r · gn − x · r³ · mean(gn · x) with gn = (g · w) in fp32.
at::Tensor rms_norm_backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& weight,
                             double eps, at::Tensor& dw) {
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor r = at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  const at::Tensor normed = (x32 * r).to(x.scalar_type());
  dw = (g * normed).reshape({-1, x.size(-1)}).sum(0);
  const at::Tensor gn = (g * weight).to(at::kFloat);
  const at::Tensor dx = r * gn - x32 * r.pow(3) * (gn * x32).mean(-1, /*keepdim=*/true);
  return dx.to(x.scalar_type());
}

// [B, heads, T, d] -> [B, T, heads·d]
at::Tensor merge(const at::Tensor& g) {
  return g.transpose(1, 2).reshape({g.size(0), g.size(2), g.size(1) * g.size(3)});
}

}  // namespace

at::Tensor llama_block_forward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                      const at::Tensor& x) {
  const BlockLayout at = block_layout(config);
  at::Tensor a;
  {
    AttentionInputs in = attention_inputs(config, at, source.acquire(kLlamaAttnInPiece), x);
    source.release();
    const auto [cos, sin] = rotary_tables(config, x.size(1), x.scalar_type(), x.device());
    a = attention(config, cos, sin, in.q, in.k, in.v);
  }
  const at::Tensor hidden = x + project(a, source.acquire(kLlamaAttnOutPiece)[at.o]);
  source.release();
  at::Tensor n2, gate;
  {
    const BlockWeights& w = source.acquire(kLlamaGatePiece);
    n2 = llama_rms_norm(hidden, w[at.ln2], config.layer_norm_eps);
    gate = project(n2, w[at.gate]);
    source.release();
  }
  const at::Tensor mixed = at::silu(gate) * project(n2, source.acquire(kLlamaUpPiece)[at.up]);
  source.release();
  at::Tensor out = hidden + project(mixed, source.acquire(kLlamaDownPiece)[at.down]);
  source.release();
  return out;
}

at::Tensor llama_block_backward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                       const at::Tensor& input, const at::Tensor& output_grad,
                                       const PieceGradsFn& take) {
  const BlockLayout at = block_layout(config);
  const double eps = config.layer_norm_eps;
  Internals in = recompute(config, source, input.detach());
  torch::NoGradGuard no_grad;
  const int count = block_tensor_count(config);
  const at::Tensor g_out = output_grad.to(input.options());
  // Piece p's weight gradients, handed over once its weights are released.
  const auto finish = [&](int piece, BlockWeights& grads) {
    source.release();
    take(piece, grads);
  };
  at::Tensor g_mixed;  // down: z = h + down(m)
  {
    BlockWeights grads(static_cast<std::size_t>(count));
    g_mixed =
        linear_backward(g_out, in.mixed, source.acquire(kLlamaDownPiece)[at.down], grads[at.down]);
    in.mixed = at::Tensor();
    finish(kLlamaDownPiece, grads);
  }
  at::Tensor g_n2, g_gate;  // up: m = silu(g) · up(n2)
  {
    BlockWeights grads(static_cast<std::size_t>(count));
    g_gate = at::silu_backward(g_mixed * in.up, in.gate);
    const at::Tensor g_up = g_mixed * at::silu(in.gate);
    g_mixed = in.up = at::Tensor();
    g_n2 = linear_backward(g_up, in.n2, source.acquire(kLlamaUpPiece)[at.up], grads[at.up]);
    finish(kLlamaUpPiece, grads);
  }
  at::Tensor g_hidden;  // gate: n2 = RMSNorm(h), g = gate(n2); h's gradient adds z's
  {
    BlockWeights grads(static_cast<std::size_t>(count));
    const BlockWeights& w = source.acquire(kLlamaGatePiece);
    g_n2 = g_n2 + linear_backward(g_gate, in.n2, w[at.gate], grads[at.gate]);
    g_hidden = g_out + rms_norm_backward(g_n2, in.hidden, w[at.ln2], eps, grads[at.ln2]);
    in.gate = in.n2 = in.hidden = g_gate = g_n2 = at::Tensor();
    finish(kLlamaGatePiece, grads);
  }
  at::Tensor g_attn;  // attention out: h = x + o(a)
  {
    BlockWeights grads(static_cast<std::size_t>(count));
    g_attn = linear_backward(g_hidden, in.attn.detach(), source.acquire(kLlamaAttnOutPiece)[at.o],
                             grads[at.o]);
    finish(kLlamaAttnOutPiece, grads);
  }
  // attention in: the attention's graph, then q, k, v and the norm; x's gradient adds h's
  std::vector<at::Tensor> g_qkv =
      torch::autograd::grad({in.attn}, {in.q, in.k, in.v}, {g_attn.view(in.attn.sizes())});
  in.attn = in.q = in.k = in.v = at::Tensor();
  BlockWeights grads(static_cast<std::size_t>(count));
  const BlockWeights& w = source.acquire(kLlamaAttnInPiece);
  const auto bias_grad = [&](int index) { return index >= 0 ? &grads[index] : nullptr; };
  at::Tensor g_n1 =
      linear_backward(merge(g_qkv[0]), in.n1, w[at.q], grads[at.q], bias_grad(at.q_bias));
  g_n1 = g_n1 + linear_backward(merge(g_qkv[1]), in.n1, w[at.k], grads[at.k], bias_grad(at.k_bias));
  g_n1 = g_n1 + linear_backward(merge(g_qkv[2]), in.n1, w[at.v], grads[at.v], bias_grad(at.v_bias));
  at::Tensor g_x = g_hidden + rms_norm_backward(g_n1, in.x, w[at.ln1], eps, grads[at.ln1]);
  finish(kLlamaAttnInPiece, grads);
  return g_x;
}

at::Tensor llama_block_forward(const ModelConfig& config, const BlockWeights& block,
                               const at::Tensor& x) {
  WholeBlockSource source(block);
  return llama_block_forward_pieces(config, source, x);
}

BlockGrads llama_block_backward(const ModelConfig& config, const BlockWeights& block,
                                const at::Tensor& input, const at::Tensor& output_grad) {
  WholeBlockSource source(block);
  BlockGrads out;
  out.weight_grads = BlockWeights(static_cast<std::size_t>(block_tensor_count(config)));
  out.input_grad = llama_block_backward_pieces(
      config, source, input, output_grad, [&](int piece, const BlockWeights& grads) {
        const TensorRange range = block_piece_tensors(config, piece);
        for (int i = range.first; i < range.last; ++i) out.weight_grads[i] = grads[i];
      });
  return out;
}

at::Tensor llama_loss_full_graph(const ModelConfig& config, const ModelWeights& weights,
                                 const at::Tensor& tokens, const at::Tensor& targets) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong,
              "tokens must be int64 [B, T], got ", tokens.sizes());
  at::Tensor x = at::embedding(weights.wte, tokens);
  for (const BlockWeights& block : weights.blocks) x = llama_block_forward(config, block, x);
  x = llama_rms_norm(x, weights.ln_f_weight, config.layer_norm_eps);
  const at::Tensor logits = at::linear(x, weights.head()).to(at::kFloat);  // [B, T, V]
  return at::cross_entropy_loss(logits.reshape({-1, config.vocab}),
                                targets.reshape({-1}).to(logits.device()), {}, at::Reduction::Mean,
                                kIgnoredTarget);
}

}  // namespace sparsetrain::fuyou
