// GPT forward, block-wise recompute backward and the chunked LM loss (see gpt_model.h).
#include "fuyou/model/gpt_model.h"

#include <torch/torch.h>

#include <algorithm>

#include "common/error.h"
#include "fuyou/model/llama_model.h"
#include "fuyou/model/token_data.h"

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

// The targets the loss averages over, as a double 0-dim tensor on their device (no host sync):
// those not kIgnoredTarget (token_data.h: a loss mask's 0), at least 1 — a micro-batch whose
// targets are all masked has loss 0 and no gradient.
at::Tensor counted_targets(const at::Tensor& flat_targets) {
  return flat_targets.ne(kIgnoredTarget).sum().to(at::kDouble).clamp_min(1.0);
}

std::int64_t resolve_chunk_rows(const ModelConfig& config, std::int64_t chunk_rows) {
  return chunk_rows > 0 ? chunk_rows : default_loss_chunk_rows(config);
}

// The norm before the LM head: GPT-2's LayerNorm (weight, bias), Llama's RMSNorm (weight).
at::Tensor final_norm(const ModelConfig& config, const at::Tensor& x, const at::Tensor& weight,
                      const at::Tensor& bias) {
  if (config.llama()) return llama_rms_norm(x, weight, config.layer_norm_eps);
  return at::layer_norm(x, {config.n_embd}, weight, bias, config.layer_norm_eps);
}

}  // namespace

void accumulate(at::Tensor& acc, const at::Tensor& g) {
  if (g.defined()) acc.add_(g.to(acc.options()));
}

at::Tensor embed_forward(const ModelWeights& weights, const at::Tensor& tokens) {
  const std::int64_t t = tokens.size(1);
  // x0: [B, T, C]
  at::Tensor x = at::embedding(weights.wte, tokens.to(weights.wte.device()));
  if (!weights.wpe.defined()) return x;  // Llama: positions are rotary, in the blocks
  return x + weights.wpe.slice(/*dim=*/0, 0, t).unsqueeze(0);
}

void embed_backward(const at::Tensor& tokens, const at::Tensor& grad_x0, at::Tensor& wte_grad,
                    at::Tensor& wpe_grad) {
  const std::int64_t c = grad_x0.size(2);
  const std::int64_t t = grad_x0.size(1);
  const at::Tensor g = grad_x0.to(wte_grad.options());
  wte_grad.index_add_(0, tokens.reshape({-1}).to(wte_grad.device()), g.reshape({-1, c}));
  if (wpe_grad.defined()) wpe_grad.slice(0, 0, t).add_(g.sum(0).to(wpe_grad.options()));
}

namespace {

// Every tensor a block's backward reads: its input and the activations of block_activations.h,
// kept or recomputed.
struct Internals {
  at::Tensor x;                          // [B, T, C]
  at::Tensor ln1, ln1_mean, ln1_rstd;    // [B, T, C], [B, T, 1] x2
  at::Tensor qkv;                        // [B, T, 3C]
  at::Tensor attn, attn_lse;             // [B, T, C]; CPU: [B, H, T] fp32
  at::Tensor resid;                      // [B, T, C]
  at::Tensor ln2, ln2_mean, ln2_rstd;    // as ln1's
  at::Tensor fc, gelu;                   // [B, T, 4C] each
  at::Tensor attn_leaf, attn_graph_out;  // CUDA: the attention's graph from a leaf of qkv
};

struct Norm {
  at::Tensor out, mean, rstd;
};

Norm norm_forward(const ModelConfig& config, const at::Tensor& x, const at::Tensor& weight,
                  const at::Tensor& bias) {
  auto [out, mean, rstd] =
      at::native_layer_norm(x, {config.n_embd}, weight, bias, config.layer_norm_eps);
  return {out, mean, rstd};
}

// qkv [B, T, 3C] -> q, k, v [B, H, T, D] (views).
std::array<at::Tensor, 3> heads_of(const ModelConfig& config, const at::Tensor& qkv) {
  const std::int64_t b = qkv.size(0), t = qkv.size(1);
  auto parts = qkv.split(config.n_embd, /*dim=*/2);
  std::array<at::Tensor, 3> out;
  for (std::size_t i = 0; i < 3; ++i) {
    out[i] = parts[i].view({b, t, config.n_head, config.head_dim()}).transpose(1, 2);
  }
  return out;
}

// [B, T, C] <-> [B, H, T, D] (views).
at::Tensor merge_heads(const at::Tensor& a) {
  return a.transpose(1, 2).reshape({a.size(0), a.size(2), a.size(1) * a.size(3)});
}
at::Tensor split_heads(const ModelConfig& config, const at::Tensor& a) {
  return a.view({a.size(0), a.size(1), config.n_head, config.head_dim()}).transpose(1, 2);
}

struct Attention {
  at::Tensor out, lse;  // [B, T, C]; CPU: the log-sum-exp [B, H, T] its backward reads
};

// Causal attention, scale 1/sqrt(D). The CPU calls the flash kernel that
// scaled_dot_product_attention picks there (the same bits), for its log-sum-exp; CUDA goes
// through scaled_dot_product_attention (its backward: autograd).
Attention attention_forward(const ModelConfig& config, const at::Tensor& qkv) {
  auto [q, k, v] = heads_of(config, qkv);
  if (qkv.is_cuda()) {
    return {merge_heads(at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{},
                                                         /*dropout_p=*/0.0, /*is_causal=*/true)),
            {}};
  }
  auto [out, lse] = at::_scaled_dot_product_flash_attention_for_cpu(q, k, v, /*dropout_p=*/0.0,
                                                                    /*is_causal=*/true);
  return {merge_heads(out), lse};
}

// Linear backward: d(input), and the weight's and bias's gradients into `dw`, `db`.
// g: [..., out], input: [..., in], weight [out, in].
at::Tensor linear_backward(const at::Tensor& g, const at::Tensor& input, const at::Tensor& weight,
                           at::Tensor& dw, at::Tensor& db) {
  const at::Tensor g2 = g.reshape({-1, g.size(-1)});
  const at::Tensor x2 = input.reshape({-1, input.size(-1)});
  dw = g2.t().mm(x2);
  db = g2.sum(0);
  return g2.mm(weight).view(input.sizes());
}

at::Tensor norm_backward(const ModelConfig& config, const at::Tensor& g, const at::Tensor& input,
                         const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& weight,
                         const at::Tensor& bias, at::Tensor& dw, at::Tensor& db) {
  auto [dx, dweight, dbias] = at::native_layer_norm_backward(g, input, {config.n_embd}, mean, rstd,
                                                             weight, bias, {true, true, true});
  dw = dweight;
  db = dbias;
  return dx;
}

// d(attn) [B, T, C] -> d(qkv) [B, T, 3C].
at::Tensor attention_backward(const ModelConfig& config, const Internals& in, const at::Tensor& g) {
  if (in.attn_leaf.defined()) {
    return torch::autograd::grad({in.attn_graph_out}, {in.attn_leaf}, {g})[0];
  }
  auto [q, k, v] = heads_of(config, in.qkv);
  auto [dq, dk, dv] = at::_scaled_dot_product_flash_attention_for_cpu_backward(
      split_heads(config, g), q, k, v, split_heads(config, in.attn), in.attn_lse,
      /*dropout_p=*/0.0, /*is_causal=*/true);
  return at::cat({merge_heads(dq), merge_heads(dk), merge_heads(dv)}, /*dim=*/2);
}

void keep_tensors(BlockActivations* kept, ActivationSet keep, int activation,
                  std::vector<at::Tensor> tensors) {
  if (kept && keep.has(activation)) kept->tensors[activation] = std::move(tensors);
}

// The forward, pieces acquired in turn; the kept activations into `kept`.
at::Tensor forward_from(const ModelConfig& config, BlockPieceSource& source, const at::Tensor& x,
                        ActivationSet keep, BlockActivations* kept) {
  if (kept) *kept = BlockActivations{keep, {}};
  at::Tensor attn, resid, gelu;
  {
    const BlockWeights& w = source.acquire(kAttnInPiece);
    Norm n1 = norm_forward(config, x, w[kLn1Weight], w[kLn1Bias]);
    at::Tensor qkv = at::linear(n1.out, w[kAttnQkvWeight], w[kAttnQkvBias]);
    Attention a = attention_forward(config, qkv);
    source.release();
    keep_tensors(kept, keep, kLn1Out, {n1.out, n1.mean, n1.rstd});
    keep_tensors(kept, keep, kQkv, {qkv});
    std::vector<at::Tensor> attn_kept{a.out};
    if (a.lse.defined()) attn_kept.push_back(a.lse);
    keep_tensors(kept, keep, kAttnOut, std::move(attn_kept));
    attn = a.out;
  }
  {
    const BlockWeights& w = source.acquire(kAttnOutPiece);
    resid = x + at::linear(attn, w[kAttnProjWeight], w[kAttnProjBias]);
    source.release();
    keep_tensors(kept, keep, kAttnResidual, {resid});
  }
  {
    const BlockWeights& w = source.acquire(kMlpInPiece);
    Norm n2 = norm_forward(config, resid, w[kLn2Weight], w[kLn2Bias]);
    at::Tensor fc = at::linear(n2.out, w[kMlpFcWeight], w[kMlpFcBias]);
    source.release();
    gelu = at::gelu(fc, "tanh");
    keep_tensors(kept, keep, kLn2Out, {n2.out, n2.mean, n2.rstd});
    keep_tensors(kept, keep, kMlpPreGelu, {fc});
    keep_tensors(kept, keep, kMlpHidden, {gelu});
  }
  const BlockWeights& w = source.acquire(kMlpOutPiece);
  at::Tensor z = resid + at::linear(gelu, w[kMlpProjWeight], w[kMlpProjBias]);
  source.release();
  return z;
}

const at::Tensor& kept_tensor(const BlockActivations& kept, int activation, std::size_t i) {
  return kept.tensors[activation][i];
}

// The backward's tensors: the kept ones as they are, the others recomputed (no gradients) from
// the ones they depend on, pieces acquired only where the recompute reads their weights.
Internals materialize(const ModelConfig& config, BlockPieceSource& source, const at::Tensor& x,
                      const BlockActivations& kept) {
  torch::NoGradGuard no_grad;
  const ActivationSet has = kept.set;
  Internals in;
  in.x = x;
  const PieceFlags reads = recompute_pieces(config, has);
  if (has.has(kLn1Out)) {
    in.ln1 = kept_tensor(kept, kLn1Out, 0);
    in.ln1_mean = kept_tensor(kept, kLn1Out, 1);
    in.ln1_rstd = kept_tensor(kept, kLn1Out, 2);
  }
  if (has.has(kQkv)) in.qkv = kept_tensor(kept, kQkv, 0);
  if (reads[kAttnInPiece]) {
    const BlockWeights& w = source.acquire(kAttnInPiece);
    if (!in.ln1.defined()) {
      Norm n1 = norm_forward(config, x, w[kLn1Weight], w[kLn1Bias]);
      in.ln1 = n1.out;
      in.ln1_mean = n1.mean;
      in.ln1_rstd = n1.rstd;
    }
    if (!in.qkv.defined()) in.qkv = at::linear(in.ln1, w[kAttnQkvWeight], w[kAttnQkvBias]);
    source.release();
  }
  if (has.has(kAttnOut)) {
    in.attn = kept_tensor(kept, kAttnOut, 0);
    if (!x.is_cuda()) in.attn_lse = kept_tensor(kept, kAttnOut, 1);
  }
  if (!in.attn.defined()) {  // as the forward made it, without gradients
    Attention a = attention_forward(config, in.qkv);
    in.attn = a.out;
    in.attn_lse = a.lse;
  }
  if (x.is_cuda()) {
    // The attention's backward is autograd's: its graph, recorded here. Its output is read by
    // nothing else: scaled_dot_product_attention may pick another kernel with gradients on, and
    // the backward must read the forward's attn whether it was kept or recomputed.
    torch::AutoGradMode enable(true);
    in.attn_leaf = grad_leaf(in.qkv);
    in.attn_graph_out = attention_forward(config, in.attn_leaf).out;
  }
  if (has.has(kAttnResidual)) in.resid = kept_tensor(kept, kAttnResidual, 0);
  if (reads[kAttnOutPiece]) {
    const BlockWeights& w = source.acquire(kAttnOutPiece);
    in.resid = x + at::linear(in.attn, w[kAttnProjWeight], w[kAttnProjBias]);
    source.release();
  }
  if (has.has(kLn2Out)) {
    in.ln2 = kept_tensor(kept, kLn2Out, 0);
    in.ln2_mean = kept_tensor(kept, kLn2Out, 1);
    in.ln2_rstd = kept_tensor(kept, kLn2Out, 2);
  }
  if (has.has(kMlpPreGelu)) in.fc = kept_tensor(kept, kMlpPreGelu, 0);
  if (reads[kMlpInPiece]) {
    const BlockWeights& w = source.acquire(kMlpInPiece);
    if (!in.ln2.defined()) {
      Norm n2 = norm_forward(config, in.resid, w[kLn2Weight], w[kLn2Bias]);
      in.ln2 = n2.out;
      in.ln2_mean = n2.mean;
      in.ln2_rstd = n2.rstd;
    }
    if (!in.fc.defined()) in.fc = at::linear(in.ln2, w[kMlpFcWeight], w[kMlpFcBias]);
    source.release();
  }
  in.gelu = has.has(kMlpHidden) ? kept_tensor(kept, kMlpHidden, 0) : at::gelu(in.fc, "tanh");
  return in;
}

// Piece p's backward from the gradient of its output (block_piece's residual bookkeeping in
// walk_backward): its weight gradients into `grads`, returns the gradient of its input.
at::Tensor piece_backward(const ModelConfig& config, int piece, const BlockWeights& w,
                          const Internals& in, const at::Tensor& g, BlockWeights& grads) {
  switch (piece) {
    case kMlpOutPiece:  // g = dz -> d(gelu)
      return linear_backward(g, in.gelu, w[kMlpProjWeight], grads[kMlpProjWeight],
                             grads[kMlpProjBias]);
    case kMlpInPiece: {  // d(gelu) -> the MLP branch's share of d(resid)
      const at::Tensor dfc = at::gelu_backward(g, in.fc, "tanh");
      const at::Tensor dln2 =
          linear_backward(dfc, in.ln2, w[kMlpFcWeight], grads[kMlpFcWeight], grads[kMlpFcBias]);
      return norm_backward(config, dln2, in.resid, in.ln2_mean, in.ln2_rstd, w[kLn2Weight],
                           w[kLn2Bias], grads[kLn2Weight], grads[kLn2Bias]);
    }
    case kAttnOutPiece:  // d(resid) -> d(attn)
      return linear_backward(g, in.attn, w[kAttnProjWeight], grads[kAttnProjWeight],
                             grads[kAttnProjBias]);
    case kAttnInPiece: {  // d(attn) -> the attention branch's share of dx
      const at::Tensor dqkv = attention_backward(config, in, g);
      const at::Tensor dln1 = linear_backward(dqkv, in.ln1, w[kAttnQkvWeight],
                                              grads[kAttnQkvWeight], grads[kAttnQkvBias]);
      return norm_backward(config, dln1, in.x, in.ln1_mean, in.ln1_rstd, w[kLn1Weight], w[kLn1Bias],
                           grads[kLn1Weight], grads[kLn1Bias]);
    }
    default:
      TORCH_INTERNAL_ASSERT(false, "block piece ", piece);
  }
}

// The two pieces whose output is added to the residual stream (attention out, MLP out).
bool adds_to_residual(int piece) { return piece == kAttnOutPiece || piece == kMlpOutPiece; }

// The pieces in backward order from the gradient of the block output: a piece that adds to the
// residual gets the residual stream's gradient, the others their successor's input gradient, and
// the residual stream adds the input gradients of the pieces that branch off it (MLP in, attention
// in): dy = dz + d(MLP in), dx = dy + d(attention in). `input_grad(p, output_grad)` backpropagates
// piece p; returns d(loss)/dx.
at::Tensor walk_backward(const at::Tensor& output_grad,
                         const std::function<at::Tensor(int, const at::Tensor&)>& input_grad) {
  at::Tensor residual = output_grad, next = output_grad;
  for (int p = kMlpOutPiece; p >= 0; --p) {
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

// Drops the tensors no piece before `piece` (in backward order) reads, so a block's backward
// holds fewer of them as it goes (those the caller kept stay with the caller).
void release_after(int piece, Internals& in) {
  switch (piece) {
    case kMlpOutPiece:
      in.gelu = at::Tensor();
      break;
    case kMlpInPiece:
      in.fc = in.ln2 = in.ln2_mean = in.ln2_rstd = in.resid = at::Tensor();
      break;
    case kAttnInPiece:
      in = Internals();
      break;
    default:
      break;  // attention out: attn is the attention's backward's too
  }
}

void check_kept(const ModelConfig& config, const BlockActivations& kept, const at::Tensor& x) {
  for (int a = 0; a < kBlockActivations; ++a) {
    const auto shapes = activation_shapes(config, a, x.size(0), x.size(1), x.is_cuda());
    const auto& tensors = kept.tensors[a];
    const bool ok = kept.set.has(a) ? tensors.size() == shapes.size() : tensors.empty();
    TORCH_CHECK(ok, "block activation ", block_activation_name(a), ": ", tensors.size(),
                " tensors for a set ", kept.set.to_string());
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      TORCH_CHECK(tensors[i].sizes() == at::IntArrayRef(shapes[i]), "block activation ",
                  block_activation_name(a), " tensor ", i, " has shape ", tensors[i].sizes());
    }
  }
}

}  // namespace

at::Tensor block_forward(const ModelConfig& config, const BlockWeights& w, const at::Tensor& x,
                         ActivationSet keep, BlockActivations* kept) {
  if (config.llama()) {
    ST_ASSERT(keep.empty(), "Llama blocks keep no activations (block_activations.h is GPT-2's)");
    return llama_block_forward(config, w, x);
  }
  WholeBlockSource source(w);
  return forward_from(config, source, x, keep, kept);
}

at::Tensor block_forward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                const at::Tensor& x, ActivationSet keep, BlockActivations* kept) {
  if (config.llama()) {
    ST_ASSERT(keep.empty(), "Llama blocks keep no activations (block_activations.h is GPT-2's)");
    return llama_block_forward_pieces(config, source, x);
  }
  return forward_from(config, source, x, keep, kept);
}

BlockGrads block_backward(const ModelConfig& config, const BlockWeights& block,
                          const at::Tensor& input, const at::Tensor& output_grad,
                          const BlockActivations& kept) {
  if (config.llama()) {
    ST_ASSERT(kept.set.empty(), "Llama blocks keep no activations");
    return llama_block_backward(config, block, input, output_grad);
  }
  check_kept(config, kept, input);
  WholeBlockSource source(block);
  Internals in = materialize(config, source, input.detach(), kept);
  torch::NoGradGuard no_grad;
  BlockGrads out;
  out.input_grad = walk_backward(output_grad, [&](int p, const at::Tensor& g) {
    at::Tensor input_grad = piece_backward(config, p, block, in, g, out.weight_grads);
    release_after(p, in);
    return input_grad;
  });
  return out;
}

at::Tensor block_backward_pieces(const ModelConfig& config, BlockPieceSource& source,
                                 const at::Tensor& input, const at::Tensor& output_grad,
                                 const BlockActivations& kept, const PieceGradsFn& take) {
  if (config.llama()) {
    ST_ASSERT(kept.set.empty(), "Llama blocks keep no activations");
    return llama_block_backward_pieces(config, source, input, output_grad, take);
  }
  check_kept(config, kept, input);
  Internals in = materialize(config, source, input.detach(), kept);
  torch::NoGradGuard no_grad;
  return walk_backward(output_grad, [&](int p, const at::Tensor& g) {
    BlockWeights grads;
    const at::Tensor input_grad = piece_backward(config, p, source.acquire(p), in, g, grads);
    source.release();
    release_after(p, in);
    take(p, grads);
    return input_grad;
  });
}

std::int64_t default_loss_chunk_rows(const ModelConfig& config) {
  constexpr std::int64_t kLogitBytes = 64ll << 20;
  return std::max<std::int64_t>(1, kLogitBytes / (config.vocab * 4));
}

double lm_loss(const ModelConfig& config, const ModelWeights& weights, const at::Tensor& x_final,
               const at::Tensor& targets, std::int64_t chunk_rows) {
  torch::NoGradGuard no_grad;
  const std::int64_t c = config.n_embd;
  const at::Tensor x = x_final.reshape({-1, c});
  const at::Tensor t = targets.reshape({-1}).to(x.device());
  const std::int64_t rows = x.size(0), step = resolve_chunk_rows(config, chunk_rows);
  at::Tensor sum = at::zeros({}, x.options().dtype(at::kDouble));
  for (std::int64_t r = 0; r < rows; r += step) {
    const std::int64_t end = std::min(rows, r + step);
    at::Tensor h = final_norm(config, x.slice(0, r, end), weights.ln_f_weight, weights.ln_f_bias);
    at::Tensor logits = at::matmul(h, weights.head().t()).to(at::kFloat);  // [rows, V]
    sum +=
        at::cross_entropy_loss(logits, t.slice(0, r, end), {}, at::Reduction::Sum).to(at::kDouble);
  }
  return (sum / counted_targets(t)).item<double>();
}

LmLossBackward lm_loss_backward(const ModelConfig& config, const ModelWeights& weights,
                                const at::Tensor& x_final, const at::Tensor& targets,
                                double grad_scale, const HeadGradFn& take_head,
                                std::int64_t chunk_rows, std::int64_t vocab_slice_rows) {
  const std::int64_t c = config.n_embd;
  const at::Tensor x = x_final.detach().reshape({-1, c});
  const at::Tensor t = targets.reshape({-1}).to(x.device());
  const std::int64_t rows = x.size(0), step = resolve_chunk_rows(config, chunk_rows);
  const bool bias = weights.ln_f_bias.defined();  // GPT-2's LayerNorm; Llama's RMSNorm has none
  const at::Tensor& head = weights.head();        // [V, C]
  // The final norm over all rows under autograd (B·T·C: small); h [rows, C] without it.
  std::vector<at::Tensor> wrt = {grad_leaf(x), grad_leaf(weights.ln_f_weight)};
  if (bias) wrt.push_back(grad_leaf(weights.ln_f_bias));
  at::Tensor normed;
  {
    torch::AutoGradMode enable(true);
    normed = final_norm(config, wrt[0], wrt[1], bias ? wrt[2] : at::Tensor());
  }
  torch::NoGradGuard no_grad;
  const at::Tensor h = normed.detach();
  const at::Tensor counted = counted_targets(t);
  // Pass 1, chunks of rows: each row's log-sum-exp over the vocabulary [rows] and the loss.
  at::Tensor lse = at::empty({rows}, x.options().dtype(at::kFloat));
  at::Tensor sum = at::zeros({}, x.options().dtype(at::kDouble));
  for (std::int64_t r = 0; r < rows; r += step) {
    const std::int64_t end = std::min(rows, r + step);
    const at::Tensor logits = at::matmul(h.slice(0, r, end), head.t()).to(at::kFloat);  // [R, V]
    lse.slice(0, r, end).copy_(at::logsumexp(logits, {1}));
    sum +=
        at::cross_entropy_loss(logits, t.slice(0, r, end), {}, at::Reduction::Sum).to(at::kDouble);
  }
  // Pass 2, slices of the vocabulary: d(loss)/d(logits) = (softmax − onehot) · scale on the
  // counted rows; the head's slice of gradient in one matmul over every row, h's summed in fp32.
  const at::Tensor scale = (grad_scale / counted).to(at::kFloat);
  const at::Tensor row_scale = t.ne(kIgnoredTarget).to(at::kFloat).mul_(scale).unsqueeze(1);
  const at::Tensor lse_col = lse.unsqueeze(1);
  at::Tensor h_grad = at::zeros({rows, c}, x.options().dtype(at::kFloat));
  const std::int64_t slice =
      vocab_slice_rows > 0 ? vocab_slice_rows : loss_vocab_slice_rows(config, rows);
  for (std::int64_t v = 0; v < config.vocab; v += slice) {
    const std::int64_t end = std::min(config.vocab, v + slice);
    const at::Tensor w = head.slice(0, v, end);          // [S, C]
    at::Tensor g = at::matmul(h, w.t()).to(at::kFloat);  // logits [rows, S]
    g.sub_(lse_col).exp_();                              // softmax
    // − onehot on the rows whose target is in the slice (a scatter: no host sync on CUDA)
    const at::Tensor hit = (t >= v).logical_and_(t < end).unsqueeze(1);
    g.scatter_add_(1, (t - v).clamp_(0, end - v - 1).unsqueeze(1), hit.to(at::kFloat).neg_());
    g.mul_(row_scale);
    const at::Tensor g_c = g.to(head.scalar_type());
    take_head(v, at::matmul(g_c.t(), h));  // [S, C]
    h_grad.add_(at::matmul(g_c, w).to(at::kFloat));
  }
  LmLossBackward out;
  out.loss = (sum / counted).item<double>();
  {
    torch::AutoGradMode enable(true);
    auto g = torch::autograd::grad({normed}, wrt, {h_grad.to(normed.scalar_type())});
    out.input_grad = std::move(g[0]).view(x_final.sizes());
    out.ln_f_weight_grad = std::move(g[1]);
    if (bias) out.ln_f_bias_grad = std::move(g[2]);
  }
  return out;
}

double gpt_forward_backward(const ModelConfig& config, const ModelWeights& weights,
                            const at::Tensor& tokens, const at::Tensor& targets, double grad_scale,
                            ModelWeights& grads, std::int64_t chunk_rows,
                            at::Tensor* embedding_scratch) {
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
  // The micro-batch's wte gradient: in the scratch from zero, or straight into the accumulator.
  at::Tensor wte = embedding_scratch ? embedding_scratch->zero_() : grads.wte;
  at::Tensor head_acc = grads.lm_head.defined() ? grads.lm_head : wte;
  LmLossBackward head = lm_loss_backward(
      config, weights, x, targets, grad_scale,
      [&](std::int64_t first, const at::Tensor& g) {
        at::Tensor rows = head_acc.slice(0, first, first + g.size(0));
        accumulate(rows, g);
      },
      chunk_rows);
  accumulate(grads.ln_f_weight, head.ln_f_weight_grad);
  accumulate(grads.ln_f_bias, head.ln_f_bias_grad);
  at::Tensor grad = std::move(head.input_grad);
  x = at::Tensor();
  for (std::size_t l = weights.blocks.size(); l-- > 0;) {
    BlockGrads block = block_backward(config, weights.blocks[l], inputs[l], grad);
    for (int i = 0; i < block.weight_grads.size(); ++i)
      accumulate(grads.blocks[l][i], block.weight_grads[i]);
    grad = std::move(block.input_grad);
    inputs[l] = at::Tensor();  // free as we go
  }
  embed_backward(tokens, grad, wte, grads.wpe);
  if (embedding_scratch) grads.wte.add_(wte);
  return head.loss;
}

double gpt_loss(const ModelConfig& config, const ModelWeights& weights, const at::Tensor& tokens,
                const at::Tensor& targets, std::int64_t chunk_rows) {
  check_tokens(config, tokens, "tokens");
  torch::NoGradGuard no_grad;
  at::Tensor x = embed_forward(weights, tokens);
  for (const BlockWeights& block : weights.blocks) x = block_forward(config, block, x);
  return lm_loss(config, weights, x, targets, chunk_rows);
}

at::Tensor gpt_loss_full_graph(const ModelConfig& config, const ModelWeights& weights,
                               const at::Tensor& tokens, const at::Tensor& targets) {
  check_tokens(config, tokens, "tokens");
  if (config.llama()) return llama_loss_full_graph(config, weights, tokens, targets);
  at::Tensor x = embed_forward(weights, tokens);
  for (const BlockWeights& block : weights.blocks) x = block_forward(config, block, x);
  x = at::layer_norm(x, {config.n_embd}, weights.ln_f_weight, weights.ln_f_bias,
                     config.layer_norm_eps);
  at::Tensor logits = at::matmul(x, weights.wte.t()).to(at::kFloat);  // [B, T, V]
  return at::cross_entropy_loss(logits.reshape({-1, config.vocab}),
                                targets.reshape({-1}).to(logits.device()));
}

}  // namespace sparsetrain::fuyou
