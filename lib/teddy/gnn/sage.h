// `Sage`: GraphSAGE as the official TEDDY scripts use it (PyG SAGEConv, mean aggregation with a
// root weight, normalize=False, no biases; 2 layers, hidden 512, ReLU and dropout between them):
//   h1 = ReLU(mean_N(X)·Wl1 + X·Wr1)               Wl1, Wr1: [F, hidden]
//   logits = mean_N(h1')·Wl2 + h1'·Wr2              h1' = dropout(h1), Wl2, Wr2: [hidden, classes]
// mean_N averages over the node's own entries (a raw self loop is one; none is added), dividing
// by their count even where an edge mask scales the messages (torch_sparse's mean divides by the
// stored entries of the row, as the official UGS/WD-GLT search does). A node without neighbours
// aggregates 0. Since the layers are linear before the ReLU, X·[Wl1 | Wr1] is one product and the
// mean is taken of X·Wl1 (same result, fewer MACs).
#pragma once

#include "teddy/gnn/gnn_model.h"

namespace sparsetrain::teddy {

class SageImpl : public GnnModelImpl {
 public:
  SageImpl(std::int64_t in_features, std::int64_t classes, std::int64_t hidden = 512,
           double dropout = 0.5);
  at::Tensor forward(const GraphTensors& graph, const at::Tensor& edge_mask) override;
  // Wl1, Wr1, Wl2, Wr2 (the official code masks lin_l and lin_r of every layer)
  std::vector<at::Tensor> weight_matrices() override { return {wl1_, wr1_, wl2_, wr2_}; }
  double inference_macs(const GraphTensors& graph) override;
  std::string name() const override { return "sage"; }
  at::Tensor wl1_, wr1_, wl2_, wr2_;

 private:
  double dropout_;
};
TORCH_MODULE(Sage);

}  // namespace sparsetrain::teddy
