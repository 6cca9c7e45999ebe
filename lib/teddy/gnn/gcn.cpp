// GCN forward pass and MACs (see gcn.h).
#include "teddy/gnn/gcn.h"

#include <torch/torch.h>

namespace sparsetrain::teddy {

GcnImpl::GcnImpl(std::int64_t in_features, std::int64_t classes, std::int64_t hidden,
                 double dropout)
    : dropout_(dropout) {
  // Glorot init, as PyG's GCNConv.
  w1_ = register_parameter("w1",
                           torch::nn::init::xavier_uniform_(torch::empty({in_features, hidden})));
  w2_ = register_parameter("w2", torch::nn::init::xavier_uniform_(torch::empty({hidden, classes})));
}

namespace {

// Returns a precomputed Â·X·W1 as a function of W1: backward gives Xᵀ·(Âᵀ·G).
struct CachedFirstLayer : torch::autograd::Function<CachedFirstLayer> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& /*w1*/,
                            const at::Tensor& value, const at::Tensor& x_t, const at::Tensor& a_t) {
    ctx->saved_data["x_t"] = x_t;
    ctx->saved_data["a_t"] = a_t;
    return value;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const at::Tensor a_t = ctx->saved_data["a_t"].toTensor();
    const at::Tensor x_t = ctx->saved_data["x_t"].toTensor();
    const at::Tensor g = torch::mm(a_t, grad[0].contiguous());  // [N, hidden] Âᵀ·G
    return {torch::mm(x_t, g), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor GcnImpl::first_layer(const GraphTensors& g) {
  const bool recording = !is_training() && !torch::GradMode::is_enabled();
  const bool hit = is_training() && cache_.value.defined() && !g.x_dense.defined() &&
                   cache_.w1.unsafeGetTensorImpl() == w1_.unsafeGetTensorImpl() &&
                   cache_.w1_version == static_cast<std::int64_t>(w1_._version()) &&
                   cache_.x.unsafeGetTensorImpl() == g.x.unsafeGetTensorImpl() &&
                   cache_.norm.unsafeGetTensorImpl() == g.gcn_norm.unsafeGetTensorImpl();
  if (hit) {
    const at::Tensor a_t = torch::sparse_csr_tensor(
        g.csr_t_row_ptr, g.csr_t_col, g.gcn_norm.index_select(0, g.t_perm),
        {g.num_nodes, g.num_nodes}, g.gcn_norm.options().layout(torch::kSparseCsr));
    const at::Tensor value = cache_.value;
    cache_.value = at::Tensor();  // one use: the next step changes W1
    return CachedFirstLayer::apply(w1_, value, g.x_t, a_t);
  }
  at::Tensor z = propagate(g, feature_matmul(g, w1_, 0, false), g.gcn_norm);  // [N, hidden]
  if (recording) cache_ = {z, w1_, g.x, g.gcn_norm, static_cast<std::int64_t>(w1_._version())};
  return z;
}

at::Tensor GcnImpl::forward(const GraphTensors& g, const at::Tensor& edge_mask) {
  const at::Tensor w = masked_entry_weight(g, g.gcn_norm, edge_mask);  // [E']
  at::Tensor h =
      !edge_mask.defined() && weight_masks.empty()
          ? first_layer(g)
          : propagate(g, feature_matmul(g, masked_weight(w1_, 0), 0, false), w);  // [N, hidden]
  h = fast_dropout(torch::relu(h), dropout_, is_training());
  return propagate(g, torch::mm(h, masked_weight(w2_, 1)), w);  // [N, classes]
}

double GcnImpl::inference_macs(const GraphTensors& g) {
  const double n = static_cast<double>(g.num_nodes);
  const double entries = kept_entries(g, {}, /*with_added_loops=*/true);
  return n * (nonzeros(w1_) + nonzeros(w2_)) +
         entries * static_cast<double>(w1_.size(1) + w2_.size(1));
}

}  // namespace sparsetrain::teddy
