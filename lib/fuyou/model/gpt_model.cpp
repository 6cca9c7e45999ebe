// GPT forward, block-wise recompute backward and the chunked LM loss (see gpt_model.h).
#include "fuyou/model/gpt_model.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/error.h"

namespace sparsetrain::fuyou {

namespace {

// Leaves that share storage with `t` but record gradients: no copy of the caller's weights.
at::Tensor grad_leaf(const at::Tensor& t) { return t.detach().requires_grad_(true); }

void check_tokens(const ModelConfig& config, const at::Tensor& tokens, const char* what) {
  TORCH_CHECK(tokens.dim() == 2 && tokens.scalar_type() == at::kLong, what,
              " must be int64 [B, T], got ", tokens.sizes(), " ", tokens.scalar_type());
  TORCH_CHECK(tokens.size(1) <= config.n_positions, what, " has T = ", tokens.size(1),
              " but the model has only ", config.n_positions, " positions");
}

std::int64_t resolve_chunk_rows(const ModelConfig& config, std::int64_t chunk_rows) {
  return chunk_rows > 0 ? chunk_rows : default_loss_chunk_rows(config);
}

}  // namespace

void accumulate(at::Tensor& acc, const at::Tensor& g) {
  if (g.defined()) acc.add_(g.to(acc.options()));
}

at::Tensor embed_forward(const GptWeights& weights, const at::Tensor& tokens) {
  const std::int64_t t = tokens.size(1);
  // x0: [B, T, C]
  return at::embedding(weights.wte, tokens.to(weights.wte.device())) +
         weights.wpe.slice(/*dim=*/0, 0, t).unsqueeze(0);
}

void embed_backward(const at::Tensor& tokens, const at::Tensor& grad_x0, at::Tensor& wte_grad,
                    at::Tensor& wpe_grad) {
  const std::int64_t c = grad_x0.size(2);
  const std::int64_t t = grad_x0.size(1);
  const at::Tensor g = grad_x0.to(wte_grad.options());
  wte_grad.index_add_(0, tokens.reshape({-1}).to(wte_grad.device()), g.reshape({-1, c}));
  wpe_grad.slice(0, 0, t).add_(g.sum(0).to(wpe_grad.options()));
}

at::Tensor block_piece_forward(const ModelConfig& config, int piece, const BlockWeights& w,
                               const at::Tensor& input) {
  const std::int64_t c = config.n_embd;
  switch (piece) {
    case kAttnInPiece: {
      const std::int64_t b = input.size(0), t = input.size(1);
      const std::int64_t heads = config.n_head, d = config.head_dim();
      at::Tensor h = at::layer_norm(input, {c}, w[kLn1Weight], w[kLn1Bias], config.layer_norm_eps);
      at::Tensor qkv = at::linear(h, w[kAttnQkvWeight], w[kAttnQkvBias]);  // [B, T, 3C]
      auto parts = qkv.split(c, /*dim=*/2);
      // q, k, v: [B, H, T, D]
      auto heads_view = [&](const at::Tensor& p) {
        return p.view({b, t, heads, d}).transpose(1, 2);
      };
      at::Tensor a = at::scaled_dot_product_attention(heads_view(parts[0]), heads_view(parts[1]),
                                                      heads_view(parts[2]), /*attn_mask=*/{},
                                                      /*dropout_p=*/0.0, /*is_causal=*/true);
      return a.transpose(1, 2).reshape({b, t, c});
    }
    case kAttnOutPiece:
      return at::linear(input, w[kAttnProjWeight], w[kAttnProjBias]);
    case kMlpInPiece: {
      at::Tensor h = at::layer_norm(input, {c}, w[kLn2Weight], w[kLn2Bias], config.layer_norm_eps);
      return at::gelu(at::linear(h, w[kMlpFcWeight], w[kMlpFcBias]), "tanh");  // [B, T, 4C]
    }
    case kMlpOutPiece:
      return at::linear(input, w[kMlpProjWeight], w[kMlpProjBias]);
    default:
      TORCH_INTERNAL_ASSERT(false, "block piece ", piece);
  }
}

namespace {

// The two pieces whose output is added to the residual stream (attention out, MLP out).
bool adds_to_residual(int piece) { return piece == kAttnOutPiece || piece == kMlpOutPiece; }

// Pieces 0 … pieces-1 in forward order over `x`: piece p reads `input` (x, a, y, h in turn) and
// the residual stream takes the outputs of the two that add to it. `output(p, input)` runs piece
// p. Returns the next piece's input: the block output z after all four, h after three.
at::Tensor walk_forward(const at::Tensor& x, int pieces,
                        const std::function<at::Tensor(int, const at::Tensor&)>& output) {
  at::Tensor residual = x, input = x;
  for (int p = 0; p < pieces; ++p) {
    at::Tensor out = output(p, input);
    if (adds_to_residual(p)) {
      residual = residual + out;
      input = residual;
    } else {
      input = std::move(out);
    }
  }
  return input;
}

// The pieces in backward order from the gradient of the block output: a piece that adds to the
// residual gets the residual stream's gradient, the others their successor's input gradient, and
// the residual stream adds the input gradients of the pieces that branch off it (MLP in, attention
// in): dy = dz + d(MLP in), dx = dy + d(attention in). `input_grad(p, output_grad)` backpropagates
// piece p; returns d(loss)/dx.
at::Tensor walk_backward(const at::Tensor& output_grad,
                         const std::function<at::Tensor(int, const at::Tensor&)>& input_grad) {
  at::Tensor residual = output_grad, next = output_grad;
  for (int p = kBlockPieces - 1; p >= 0; --p) {
    at::Tensor g = input_grad(p, adds_to_residual(p) ? residual : next);
    if (adds_to_residual(p)) {
      next = std::move(g);
    } else {
      residual = residual + g;
      next = residual;
    }
  }
  return residual;
}

// One piece's autograd graph from leaves of its input and tensors (no copies).
struct PieceGraph {
  at::Tensor input;
  std::vector<at::Tensor> weights;  // the piece's tensors, in BlockTensor order
  at::Tensor output;
};

PieceGraph piece_graph(const ModelConfig& config, int piece, const BlockWeights& block,
                       const at::Tensor& input) {
  PieceGraph graph;
  BlockWeights leaves;
  graph.input = grad_leaf(input);
  const TensorRange range = block_piece_tensors(piece);
  for (int i = range.first; i < range.last; ++i) {
    leaves[i] = grad_leaf(block[i]);
    graph.weights.push_back(leaves[i]);
  }
  graph.output = block_piece_forward(config, piece, leaves, graph.input);
  return graph;
}

// Backpropagates output_grad through the graph: the input's gradient; the piece's weight
// gradients into `grads`.
at::Tensor backward_through(int piece, const PieceGraph& graph, const at::Tensor& output_grad,
                            BlockWeights& grads) {
  std::vector<at::Tensor> wrt{graph.input};
  wrt.insert(wrt.end(), graph.weights.begin(), graph.weights.end());
  auto out = torch::autograd::grad({graph.output}, wrt, {output_grad});
  const int first = block_piece_tensors(piece).first;
  for (std::size_t k = 0; k + 1 < out.size(); ++k) {
    grads[first + static_cast<int>(k)] = out[k + 1];
  }
  return out[0];
}

}  // namespace

at::Tensor block_forward(const ModelConfig& config, const BlockWeights& w, const at::Tensor& x) {
  return walk_forward(x, kBlockPieces, [&](int p, const at::Tensor& input) {
    return block_piece_forward(config, p, w, input);
  });
}

namespace {

// Pieces 0 … pieces-1 from `source`, each released after it; `inputs` records their inputs.
at::Tensor forward_from(const ModelConfig& config, BlockPieceSource& source, const at::Tensor& x,
                        int pieces, BlockPieceInputs* inputs) {
  return walk_forward(x, pieces, [&](int p, const at::Tensor& input) {
    if (inputs) (*inputs)[static_cast<std::size_t>(p)] = input;
    at::Tensor out = block_piece_forward(config, p, source.acquire(p), input);
    source.release();
    return out;
  });
}

}  // namespace

at::Tensor block_forward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                const at::Tensor& x) {
  return forward_from(config, source, x, kBlockPieces, nullptr);
}

BlockPieceInputs block_piece_inputs(const ModelConfig& config, BlockPieceSource& source,
                                    const at::Tensor& x) {
  BlockPieceInputs inputs;
  inputs[kMlpOutPiece] = forward_from(config, source, x, kMlpOutPiece, &inputs);
  return inputs;
}

BlockGrads block_backward(const ModelConfig& config, const BlockWeights& block,
                          const at::Tensor& input, const at::Tensor& output_grad) {
  torch::AutoGradMode enable(true);
  // Each piece's graph from a leaf of its input: the forward once, as block_backward_pieces'
  // recompute would run it.
  std::array<PieceGraph, kBlockPieces> graphs;
  walk_forward(input, kBlockPieces, [&](int p, const at::Tensor& piece_input) {
    graphs[static_cast<std::size_t>(p)] = piece_graph(config, p, block, piece_input.detach());
    return graphs[static_cast<std::size_t>(p)].output.detach();
  });
  BlockGrads out;
  out.input_grad = walk_backward(output_grad, [&](int p, const at::Tensor& g) {
    return backward_through(p, graphs[static_cast<std::size_t>(p)], g, out.weight_grads);
  });
  return out;
}

at::Tensor block_backward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                 const BlockPieceInputs& inputs, const at::Tensor& output_grad,
                                 const PieceGradsFn& take) {
  torch::AutoGradMode enable(true);
  return walk_backward(output_grad, [&](int p, const at::Tensor& g) {
    BlockWeights grads;
    at::Tensor input_grad;
    {
      // The graph holds the piece's weights: gone before the source may reuse their memory.
      const PieceGraph graph =
          piece_graph(config, p, source.acquire(p), inputs[static_cast<std::size_t>(p)]);
      input_grad = backward_through(p, graph, g, grads);
    }
    source.release();
    take(p, grads);
    return input_grad;
  });
}

std::int64_t default_loss_chunk_rows(const ModelConfig& config) {
  constexpr std::int64_t kLogitBytes = 64ll << 20;
  return std::max<std::int64_t>(1, kLogitBytes / (config.vocab * 4));
}

double lm_loss(const ModelConfig& config, const GptWeights& weights, const at::Tensor& x_final,
               const at::Tensor& targets, std::int64_t chunk_rows) {
  torch::NoGradGuard no_grad;
  const std::int64_t c = config.n_embd;
  const at::Tensor x = x_final.reshape({-1, c});
  const at::Tensor t = targets.reshape({-1}).to(x.device());
  const std::int64_t rows = x.size(0), step = resolve_chunk_rows(config, chunk_rows);
  at::Tensor sum = at::zeros({}, x.options().dtype(at::kDouble));
  for (std::int64_t r = 0; r < rows; r += step) {
    const std::int64_t end = std::min(rows, r + step);
    at::Tensor h = at::layer_norm(x.slice(0, r, end), {c}, weights.ln_f_weight, weights.ln_f_bias,
                                  config.layer_norm_eps);
    at::Tensor logits = at::matmul(h, weights.wte.t()).to(at::kFloat);  // [rows, V]
    sum +=
        at::cross_entropy_loss(logits, t.slice(0, r, end), {}, at::Reduction::Sum).to(at::kDouble);
  }
  return sum.item<double>() / static_cast<double>(rows);
}

LmLossBackward lm_loss_backward(const ModelConfig& config, const GptWeights& weights,
                                const at::Tensor& x_final, const at::Tensor& targets,
                                double grad_scale, std::int64_t chunk_rows) {
  torch::AutoGradMode enable(true);
  const std::int64_t c = config.n_embd;
  const at::Tensor x = x_final.detach().reshape({-1, c});
  const at::Tensor t = targets.reshape({-1}).to(x.device());
  const std::int64_t rows = x.size(0), step = resolve_chunk_rows(config, chunk_rows);
  LmLossBackward out;
  out.input_grad = at::empty_like(x);
  out.ln_f_weight_grad = at::zeros_like(weights.ln_f_weight);
  out.ln_f_bias_grad = at::zeros_like(weights.ln_f_bias);
  out.wte_grad = at::zeros_like(weights.wte);
  at::Tensor sum = at::zeros({}, x.options().dtype(at::kDouble));
  const double scale = grad_scale / static_cast<double>(rows);
  for (std::int64_t r = 0; r < rows; r += step) {
    const std::int64_t end = std::min(rows, r + step);
    std::vector<at::Tensor> wrt = {grad_leaf(x.slice(0, r, end)), grad_leaf(weights.ln_f_weight),
                                   grad_leaf(weights.ln_f_bias), grad_leaf(weights.wte)};
    at::Tensor h = at::layer_norm(wrt[0], {c}, wrt[1], wrt[2], config.layer_norm_eps);
    at::Tensor logits = at::matmul(h, wrt[3].t()).to(at::kFloat);  // [rows, V]
    at::Tensor loss = at::cross_entropy_loss(logits, t.slice(0, r, end), {}, at::Reduction::Sum);
    auto g = torch::autograd::grad({loss * scale}, wrt);
    out.input_grad.slice(0, r, end).copy_(g[0]);
    out.ln_f_weight_grad += g[1];
    out.ln_f_bias_grad += g[2];
    out.wte_grad += g[3];
    sum += loss.detach().to(at::kDouble);
  }
  out.loss = sum.item<double>() / static_cast<double>(rows);
  out.input_grad = out.input_grad.view(x_final.sizes());
  return out;
}

double gpt_forward_backward(const ModelConfig& config, const GptWeights& weights,
                            const at::Tensor& tokens, const at::Tensor& targets, double grad_scale,
                            GptWeights& grads, std::int64_t chunk_rows) {
  check_tokens(config, tokens, "tokens");
  ST_ASSERT(weights.blocks.size() == grads.blocks.size(), "grads shaped unlike the weights");
  std::vector<at::Tensor>
      inputs;  // inputs[l]: block l's input [B, T, C], the only saved activation
  inputs.reserve(weights.blocks.size());
  at::Tensor x;
  {
    torch::NoGradGuard no_grad;
    x = embed_forward(weights, tokens);
    for (const BlockWeights& block : weights.blocks) {
      inputs.push_back(x);
      x = block_forward(config, block, x);
    }
  }
  LmLossBackward head = lm_loss_backward(config, weights, x, targets, grad_scale, chunk_rows);
  accumulate(grads.ln_f_weight, head.ln_f_weight_grad);
  accumulate(grads.ln_f_bias, head.ln_f_bias_grad);
  accumulate(grads.wte, head.wte_grad);
  at::Tensor grad = std::move(head.input_grad);
  x = at::Tensor();
  for (std::size_t l = weights.blocks.size(); l-- > 0;) {
    BlockGrads block = block_backward(config, weights.blocks[l], inputs[l], grad);
    for (int i = 0; i < kBlockTensorCount; ++i)
      accumulate(grads.blocks[l][i], block.weight_grads[i]);
    grad = std::move(block.input_grad);
    inputs[l] = at::Tensor();  // free as we go
  }
  embed_backward(tokens, grad, grads.wte, grads.wpe);
  return head.loss;
}

double gpt_loss(const ModelConfig& config, const GptWeights& weights, const at::Tensor& tokens,
                const at::Tensor& targets, std::int64_t chunk_rows) {
  check_tokens(config, tokens, "tokens");
  torch::NoGradGuard no_grad;
  at::Tensor x = embed_forward(weights, tokens);
  for (const BlockWeights& block : weights.blocks) x = block_forward(config, block, x);
  return lm_loss(config, weights, x, targets, chunk_rows);
}

at::Tensor gpt_loss_full_graph(const ModelConfig& config, const GptWeights& weights,
                               const at::Tensor& tokens, const at::Tensor& targets) {
  check_tokens(config, tokens, "tokens");
  at::Tensor x = embed_forward(weights, tokens);
  for (const BlockWeights& block : weights.blocks) x = block_forward(config, block, x);
  x = at::layer_norm(x, {config.n_embd}, weights.ln_f_weight, weights.ln_f_bias,
                     config.layer_norm_eps);
  at::Tensor logits = at::matmul(x, weights.wte.t()).to(at::kFloat);  // [B, T, V]
  return at::cross_entropy_loss(logits.reshape({-1, config.vocab}),
                                targets.reshape({-1}).to(logits.device()));
}

}  // namespace sparsetrain::fuyou
