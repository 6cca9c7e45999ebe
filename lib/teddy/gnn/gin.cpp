// GIN forward pass and MACs (see gin.h).
#include "teddy/gnn/gin.h"

#include <torch/torch.h>

namespace sparsetrain::teddy {

GinImpl::GinImpl(std::int64_t in_features, std::int64_t classes, std::int64_t hidden,
                 double dropout)
    : dropout_(dropout) {
  const auto linear = linear_weight;  // torch / PyG Linear's init
  w1_ = register_parameter("w1", linear(in_features, hidden));
  w2_ = register_parameter("w2", linear(hidden, classes));
  w3_ = register_parameter("w3", linear(hidden, classes));
  eps1_ = register_parameter("eps1", torch::zeros({1}));
  eps2_ = register_parameter("eps2", torch::zeros({1}));
}

at::Tensor GinImpl::forward(const GraphTensors& g, const at::Tensor& edge_mask) {
  // Σ_N without the added loops: their entries weigh 0.
  const at::Tensor own = (~g.added_loop).to(w1_.scalar_type());  // [E']
  const at::Tensor w = masked_entry_weight(g, own, edge_mask);
  at::Tensor xw = feature_matmul(g, masked_weight(w1_, 0), 0, false);  // [N, hidden]
  at::Tensor h1 = torch::relu((1 + eps1_) * xw + propagate(g, xw, w));
  h1 = fast_dropout(h1, dropout_, is_training());
  at::Tensor hw = torch::mm(h1, masked_weight(w2_, 1));  // [N, classes]
  at::Tensor h2 = torch::relu((1 + eps2_) * hw + propagate(g, hw, w));
  return (torch::mm(h1, masked_weight(w3_, 2)) + h2) / 2;
}

double GinImpl::inference_macs(const GraphTensors& g) {
  const double n = static_cast<double>(g.num_nodes);
  const double entries = kept_entries(g, {}, /*with_added_loops=*/false);
  return n * (nonzeros(w1_) + nonzeros(w2_) + nonzeros(w3_)) +
         entries * static_cast<double>(w1_.size(1) + w2_.size(1));
}

}  // namespace sparsetrain::teddy
