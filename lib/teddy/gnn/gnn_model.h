// `GnnModelImpl`: the interface the trainer, the weight projection and the baselines see of a
// node-classification GNN (GCN, GAT, GIN in gcn.h, gat.h, gin.h), plus the message-passing
// helpers they share. Not a general GNN library: full batch, one graph, no biases (the official
// TEDDY models have none).
//
// Message passing runs as CSR matrix products with a custom backward through the precomputed
// transpose (measured on 2 cores, Cora, 512 wide, forward + backward: index_select/index_add_
// 130–240 ms, COO mm 18–40 ms, CSR mm with autograd 7 ms, CSR with the transpose 3 ms). With
// constant entry weights (GCN, GIN) the weighted adjacency is one CSR matrix; with weights that
// need gradients (GAT attention, UGS edge masks) messages are gathered (E'×N 0/1 CSR), scaled
// and summed (N×E' 0/1 CSR), all three differentiable. An optional `edge_mask` ([num_edges] of the
// source graph, one value per undirected edge) multiplies every message along that edge: UGS learns
// it; added self loops are never masked. Node features are a sparse COO matrix, so the first
// layer's X·W costs nnz(X)·out MACs instead of N·F·out.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "teddy/gnn/graph_tensors.h"

namespace sparsetrain::teddy {

struct GnnOptions {
  std::int64_t hidden = 0;         // 0: the model's default (GCN 512, GAT 8 per head, GIN 512)
  double dropout = -1;             // < 0: the model's default (GCN 0.5, GAT 0.6, GIN 0.5)
  std::int64_t heads = 8;          // GAT only
  double attention_dropout = 0.6;  // GAT only
};

class GnnModelImpl : public torch::nn::Module {
 public:
  // logits: [N, classes]. edge_mask: undefined, or [graph.num_edges] multiplying each edge.
  virtual at::Tensor forward(const GraphTensors& graph, const at::Tensor& edge_mask) = 0;
  // The 2-D weight matrices ("weights" projection set, UGS weight masks, MACs), in layer order.
  virtual std::vector<at::Tensor> weight_matrices() = 0;
  // Multiply-accumulates of one inference pass with dense features (the convention of the UGS
  // and TEDDY papers): Σ_layers N·nnz(W) + Σ_aggregations kept entries · width.
  virtual double inference_macs(const GraphTensors& graph) = 0;
  virtual std::string name() const = 0;

  // UGS: one mask per weight matrix (same shapes, may require grad), multiplied into the weight
  // in every forward pass; empty = no masks.
  std::vector<at::Tensor> weight_masks;

 protected:
  // weight_matrices()[i] times its mask, if any.
  at::Tensor masked_weight(const at::Tensor& w, std::size_t i) const {
    return i < weight_masks.size() && weight_masks[i].defined() ? w * weight_masks[i] : w;
  }
};

// "gcn" | "gat" | "gin"; throws UsageError otherwise.
std::shared_ptr<GnnModelImpl> make_gnn_model(const std::string& name, std::int64_t in_features,
                                             std::int64_t classes, const GnnOptions& options);
std::vector<std::string> gnn_model_names();

// A·dense for a sparse CSR `a` ([R, C]) with `a_t` its transpose; the gradient flows to `dense`
// only (as a_t·grad). dense: [C, D] → [R, D].
at::Tensor csr_matmul(const at::Tensor& a, const at::Tensor& a_t, const at::Tensor& dense);

// Σ over incoming entries: out[dst] += weight · h[src]. h: [N, D] or [N, H, D'];
// weight: [E'] (or [E', H] for 3-D h) or undefined (1).
at::Tensor propagate(const GraphTensors& graph, const at::Tensor& h, const at::Tensor& weight);
// Per-entry weight `base` ([E']) times the edge mask of each entry (1 on added loops).
at::Tensor masked_entry_weight(const GraphTensors& graph, const at::Tensor& base,
                               const at::Tensor& edge_mask);
// Inverted dropout with the keep mask drawn 16 bits per element from one 64-bit draw per 4
// elements (torch's bernoulli_ draws 64 bits per element: 27 % of a Cora GCN epoch on 1 core);
// p is rounded to a multiple of 2^-16. Draws from torch's default generator (manual_seed).
at::Tensor fast_dropout(const at::Tensor& x, double p, bool training);
// X·W for the features (CSR, or dense when g.x_dense is set), with dropout on X's non-zeros when
// training (inverted scaling).
at::Tensor feature_matmul(const GraphTensors& graph, const at::Tensor& w, double dropout,
                          bool training);
// A [in, out] weight initialised as torch.nn.Linear / PyG's Linear initialise their [out, in]
// one (kaiming_uniform, a = sqrt(5)), from torch's default generator.
at::Tensor linear_weight(std::int64_t in, std::int64_t out);
// Kept entries (non-zero mask, or all), for MACs.
double kept_entries(const GraphTensors& graph, const at::Tensor& edge_mask, bool with_added_loops);
double nonzeros(const at::Tensor& t);

}  // namespace sparsetrain::teddy
