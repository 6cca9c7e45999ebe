// Shared GNN pieces: the model factory and message passing over GraphTensors (see gnn_model.h).
#include "teddy/gnn/gnn_model.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "common/error.h"
#include "teddy/gnn/gat.h"
#include "teddy/gnn/gcn.h"
#include "teddy/gnn/gin.h"
#include "teddy/gnn/sage.h"

namespace sparsetrain::teddy {

std::vector<std::string> gnn_model_names() { return {"gcn", "gat", "gin", "sage"}; }

std::shared_ptr<GnnModelImpl> make_gnn_model(const std::string& name, std::int64_t in_features,
                                             std::int64_t classes, const GnnOptions& o) {
  if (name == "gcn") {
    return std::make_shared<GcnImpl>(in_features, classes, o.hidden > 0 ? o.hidden : 512,
                                     o.dropout >= 0 ? o.dropout : 0.5);
  }
  if (name == "gat") {
    return std::make_shared<GatImpl>(in_features, classes, o.hidden > 0 ? o.hidden : 8, o.heads,
                                     o.dropout >= 0 ? o.dropout : 0.6, o.attention_dropout);
  }
  if (name == "gin") {
    return std::make_shared<GinImpl>(in_features, classes, o.hidden > 0 ? o.hidden : 512,
                                     o.dropout >= 0 ? o.dropout : 0.5);
  }
  if (name == "sage") {
    return std::make_shared<SageImpl>(in_features, classes, o.hidden > 0 ? o.hidden : 512,
                                      o.dropout >= 0 ? o.dropout : 0.5);
  }
  throw common::UsageError("unknown model '" + name + "'", "choose gcn, gat, gin or sage");
}

namespace {

struct CsrMatmul : torch::autograd::Function<CsrMatmul> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& dense,
                            const at::Tensor& a, const at::Tensor& a_t) {
    ctx->saved_data["a_t"] = a_t;
    return torch::mm(a, dense);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const at::Tensor a_t = ctx->saved_data["a_t"].toTensor();
    return {torch::mm(a_t, grad[0].contiguous()), at::Tensor(), at::Tensor()};
  }
};

at::Tensor csr(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
               std::int64_t rows, std::int64_t cols) {
  return torch::sparse_csr_tensor(crow, col, values, {rows, cols},
                                  values.options().layout(torch::kSparseCsr));
}

}  // namespace

at::Tensor csr_matmul(const at::Tensor& a, const at::Tensor& a_t, const at::Tensor& dense) {
  return CsrMatmul::apply(dense.contiguous(), a, a_t);
}

at::Tensor propagate(const GraphTensors& g, const at::Tensor& h, const at::Tensor& weight) {
  const std::int64_t n = g.num_nodes;
  const std::int64_t e = g.src.size(0);
  const at::Tensor h2 = h.reshape({n, -1});  // [N, D]
  const auto opts = h.options();
  if (!weight.defined() || (!weight.requires_grad() && weight.dim() == 1 && h.dim() == 2)) {
    const at::Tensor w = weight.defined() ? weight.to(h.scalar_type()) : torch::ones({e}, opts);
    ST_ASSERT(w.dim() == 1, "constant entry weights are one per entry");
    const at::Tensor a = csr(g.csr_row_ptr, g.csr_col, w, n, n);
    const at::Tensor a_t = csr(g.csr_t_row_ptr, g.csr_t_col, w.index_select(0, g.t_perm), n, n);
    return csr_matmul(a, a_t, h2).view(h.sizes());
  }
  const at::Tensor ones = torch::ones({e}, opts);
  const at::Tensor steps = torch::arange(e + 1, g.src.options());
  const at::Tensor gather = csr(steps, g.src, ones, e, n);  // [E', N]: row e picks src_e
  const at::Tensor gather_t = csr(g.t_row_ptr, g.t_perm, ones, n, e);
  const at::Tensor scatter = csr(g.row_ptr, steps.slice(0, 0, e), ones, n, e);  // [N, E']
  const at::Tensor scatter_t = csr(steps, g.dst, ones, e, n);
  at::Tensor msg = csr_matmul(gather, gather_t, h2);  // [E', D]
  if (h.dim() == 3) {
    msg = (msg.view({e, h.size(1), h.size(2)}) * weight.view({e, -1, 1})).view({e, -1});
  } else {
    msg = msg * weight.view({e, 1});
  }
  return csr_matmul(scatter, scatter_t, msg).view(h.sizes());
}

at::Tensor fast_dropout(const at::Tensor& x, double p, bool training) {
  if (!training || p <= 0) return x;
  const std::int64_t n = x.numel();
  const at::Tensor bits =
      torch::randint(std::numeric_limits<std::int64_t>::min(),
                     std::numeric_limits<std::int64_t>::max(), {(n + 3) / 4}, torch::kInt64);
  // int16 lanes in [-32768, 32767]; drop when below the p quantile.
  const auto threshold = static_cast<std::int64_t>(std::llround(p * 65536.0)) - 32768;
  const at::Tensor keep = bits.view(torch::kInt16).slice(0, 0, n).ge(threshold).view(x.sizes());
  return x * keep.to(x.scalar_type()) * (1.0 / (1.0 - p));
}

at::Tensor linear_weight(std::int64_t in, std::int64_t out) {
  at::Tensor w = torch::empty({out, in});
  torch::nn::init::kaiming_uniform_(w, std::sqrt(5.0));
  return w.t().contiguous();
}

at::Tensor feature_matmul(const GraphTensors& g, const at::Tensor& w, double dropout,
                          bool training) {
  if (g.x_dense.defined()) return torch::mm(fast_dropout(g.x_dense, dropout, training), w);
  if (!training || dropout <= 0) return csr_matmul(g.x, g.x_t, w);
  const at::Tensor values = g.x.values();
  const at::Tensor scaled = fast_dropout(values, dropout, training);
  const at::Tensor x =
      torch::sparse_csr_tensor(g.x.crow_indices(), g.x.col_indices(), scaled, g.x.sizes(),
                               scaled.options().layout(torch::kSparseCsr));
  const at::Tensor x_t = torch::sparse_csr_tensor(g.x_t.crow_indices(), g.x_t.col_indices(),
                                                  scaled.index_select(0, g.x_t_perm), g.x_t.sizes(),
                                                  scaled.options().layout(torch::kSparseCsr));
  return csr_matmul(x, x_t, w);
}

at::Tensor masked_entry_weight(const GraphTensors& g, const at::Tensor& base,
                               const at::Tensor& edge_mask) {
  if (!edge_mask.defined()) return base;
  at::Tensor m = edge_mask.index_select(0, g.edge_id.clamp_min(0));  // [E']
  m = torch::where(g.added_loop, torch::ones_like(m), m);
  return base.defined() ? base * m : m;
}

double kept_entries(const GraphTensors& g, const at::Tensor& edge_mask, bool with_added_loops) {
  torch::NoGradGuard no_grad;
  at::Tensor use = with_added_loops ? torch::ones_like(g.added_loop) : ~g.added_loop;
  if (edge_mask.defined()) {
    at::Tensor m = edge_mask.index_select(0, g.edge_id.clamp_min(0)) != 0;
    use = use & (g.added_loop | m);
  }
  return static_cast<double>(use.sum().item<std::int64_t>());
}

double nonzeros(const at::Tensor& t) {
  return static_cast<double>((t != 0).sum().item<std::int64_t>());
}

}  // namespace sparsetrain::teddy
