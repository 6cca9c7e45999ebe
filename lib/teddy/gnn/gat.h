// `Gat`: the official TEDDY GAT — input dropout, `heads` attention heads of `hidden` channels
// concatenated, ELU, dropout, one output head; attention dropout on the coefficients; self loops
// added where missing; no biases. Per layer (PyG GATConv semantics):
//   h = X·W  [N, H, C];  e_ij = LeakyReLU_0.2(a_src·h_j + a_dst·h_i);  α = softmax_j(e_ij) per i
//   out_i = Σ_j dropout(α_ij) · h_j
// With an edge mask, α of each entry is multiplied by the mask after the softmax.
#pragma once

#include "teddy/gnn/gnn_model.h"

namespace sparsetrain::teddy {

class GatImpl : public GnnModelImpl {
 public:
  GatImpl(std::int64_t in_features, std::int64_t classes, std::int64_t hidden = 8,
          std::int64_t heads = 8, double dropout = 0.6, double attention_dropout = 0.6);
  at::Tensor forward(const GraphTensors& graph, const at::Tensor& edge_mask) override;
  std::vector<at::Tensor> weight_matrices() override { return {w1_, w2_}; }
  double inference_macs(const GraphTensors& graph) override;
  std::string name() const override { return "gat"; }
  at::Tensor w1_, a1_src_, a1_dst_, w2_, a2_src_, a2_dst_;

 private:
  // One attention layer: x [N, in] dense, or undefined for the sparse features, w [in, H·C], a_*:
  // [H, C] → [N, H, C].
  at::Tensor attend(const GraphTensors& graph, const at::Tensor& x, const at::Tensor& w,
                    const at::Tensor& a_src, const at::Tensor& a_dst, std::int64_t heads,
                    const at::Tensor& edge_mask);
  std::int64_t hidden_, heads_, classes_;
  double dropout_, attention_dropout_;
};
TORCH_MODULE(Gat);

}  // namespace sparsetrain::teddy
