// GraphSAGE forward pass and MACs (see sage.h).
#include "teddy/gnn/sage.h"

#include <torch/torch.h>

namespace sparsetrain::teddy {

SageImpl::SageImpl(std::int64_t in_features, std::int64_t classes, std::int64_t hidden,
                   double dropout)
    : dropout_(dropout) {
  const auto linear = linear_weight;  // torch / PyG Linear's init
  wl1_ = register_parameter("wl1", linear(in_features, hidden));
  wr1_ = register_parameter("wr1", linear(in_features, hidden));
  wl2_ = register_parameter("wl2", linear(hidden, classes));
  wr2_ = register_parameter("wr2", linear(hidden, classes));
}

at::Tensor SageImpl::forward(const GraphTensors& g, const at::Tensor& edge_mask) {
  const at::Tensor w = masked_entry_weight(g, g.mean_norm, edge_mask);  // [E']
  const std::int64_t hidden = wl1_.size(1);
  // X·[Wl1 | Wr1]: one sparse product for both ([N, 2·hidden])
  const at::Tensor xw =
      feature_matmul(g, torch::cat({masked_weight(wl1_, 0), masked_weight(wr1_, 1)}, 1), 0, false);
  at::Tensor h1 =
      torch::relu(propagate(g, xw.narrow(1, 0, hidden), w) + xw.narrow(1, hidden, hidden));
  h1 = fast_dropout(h1, dropout_, is_training());
  const std::int64_t classes = wl2_.size(1);
  const at::Tensor hw =
      torch::mm(h1, torch::cat({masked_weight(wl2_, 2), masked_weight(wr2_, 3)}, 1));
  return propagate(g, hw.narrow(1, 0, classes), w) + hw.narrow(1, classes, classes);
}

double SageImpl::inference_macs(const GraphTensors& g) {
  const double n = static_cast<double>(g.num_nodes);
  const double entries = kept_entries(g, {}, /*with_added_loops=*/false);
  return n * (nonzeros(wl1_) + nonzeros(wr1_) + nonzeros(wl2_) + nonzeros(wr2_)) +
         entries * static_cast<double>(wl1_.size(1) + wl2_.size(1));
}

}  // namespace sparsetrain::teddy
