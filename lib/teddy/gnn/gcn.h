// `Gcn`: the official TEDDY/UGS GCN — two layers, Â = D^-1/2 (A + I) D^-1/2 with PyG's
// add_remaining_self_loops, ReLU, dropout between the layers, no biases:
//   logits = Â · dropout(ReLU(Â · X · W1)) · W2     W1: [F, hidden], W2: [hidden, classes]
// Not a K-layer GCN. With an edge mask, each normalised entry is multiplied by the mask (UGS
// masks the normalised adjacency).
//
// No dropout precedes layer 1, so the eval pass after an optimizer step and the next training pass
// compute the same Â·X·W1 ([N, hidden], two of the three sparse products of a pass): the eval pass
// keeps it and the next training pass takes it if W1 (version counter), X and Â are unchanged,
// with a backward that still computes Xᵀ·Âᵀ·G. Only without edge and weight masks.
#pragma once

#include "teddy/gnn/gnn_model.h"

namespace sparsetrain::teddy {

class GcnImpl : public GnnModelImpl {
 public:
  GcnImpl(std::int64_t in_features, std::int64_t classes, std::int64_t hidden = 512,
          double dropout = 0.5);
  at::Tensor forward(const GraphTensors& graph, const at::Tensor& edge_mask) override;
  std::vector<at::Tensor> weight_matrices() override { return {w1_, w2_}; }
  double inference_macs(const GraphTensors& graph) override;
  std::string name() const override { return "gcn"; }
  at::Tensor w1_, w2_;

 private:
  struct FirstLayerCache {
    at::Tensor value;        // [N, hidden] Â·X·W1 of the last eval pass; undefined after use
    at::Tensor w1, x, norm;  // what it was computed from (held, so impl pointers stay unique)
    std::int64_t w1_version = -1;
  };
  at::Tensor first_layer(const GraphTensors& graph);  // Â·X·W1, through the cache

  double dropout_;
  FirstLayerCache cache_;
};
TORCH_MODULE(Gcn);

}  // namespace sparsetrain::teddy
