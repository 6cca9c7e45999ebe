// `Gin`: the official TEDDY GIN — two GIN layers with trainable ε and a linear skip head, no
// biases, averaged:
//   h1 = ReLU(((1+ε1)·X + Σ_N X)·W1)            W1: [F, hidden]
//   h2 = ReLU(((1+ε2)·h1' + Σ_N h1')·W2)        h1' = dropout(h1), W2: [hidden, classes]
//   logits = (h1'·W3 + h2) / 2                   W3: [hidden, classes]
// Σ_N runs over the graph's own entries (raw self loops included, none added). Since the layer is
// linear before the ReLU, X·W1 is computed first and then aggregated (same result, fewer MACs).
#pragma once

#include "teddy/gnn/gnn_model.h"

namespace sparsetrain::teddy {

class GinImpl : public GnnModelImpl {
 public:
  GinImpl(std::int64_t in_features, std::int64_t classes, std::int64_t hidden = 512,
          double dropout = 0.5);
  at::Tensor forward(const GraphTensors& graph, const at::Tensor& edge_mask) override;
  std::vector<at::Tensor> weight_matrices() override { return {w1_, w2_, w3_}; }
  double inference_macs(const GraphTensors& graph) override;
  std::string name() const override { return "gin"; }
  at::Tensor w1_, w2_, w3_, eps1_, eps2_;

 private:
  double dropout_;
};
TORCH_MODULE(Gin);

}  // namespace sparsetrain::teddy
