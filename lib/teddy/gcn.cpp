// GCN forward pass and MACs (see gcn.h).
#include "teddy/gcn.h"

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

at::Tensor GcnImpl::forward(const GraphTensors& g, const at::Tensor& edge_mask) {
  const at::Tensor w = masked_entry_weight(g, g.gcn_norm, edge_mask);  // [E']
  at::Tensor h =
      propagate(g, feature_matmul(g, masked_weight(w1_, 0), 0, false), w);  // [N, hidden]
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
