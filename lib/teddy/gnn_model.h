// `GnnModelImpl`: the interface the trainer, the weight projection and the baselines see of a
// node-classification GNN (GCN, GAT, GIN in gcn.h, gat.h, gin.h), plus the message-passing
// helpers they share. Not a general GNN library: full batch, one graph, no biases (the official
// TEDDY models have none).
//
// Message passing is index_select → scale → index_add_ over the entries of `GraphTensors`
// (sorted by destination). An optional `edge_mask` ([num_edges] of the source graph, one value
// per undirected edge) multiplies every message along that edge: UGS learns it; added self loops
// are never masked. Node features are a sparse COO matrix, so the first layer's X·W costs
// nnz(X)·out MACs instead of N·F·out.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "teddy/graph_tensors.h"

namespace sparsetrain::teddy {

struct GnnOptions {
  std::int64_t hidden = 0;      // 0: the model's default (GCN 512, GAT 8 per head, GIN 512)
  double dropout = -1;          // < 0: the model's default (GCN 0.5, GAT 0.6, GIN 0.5)
  std::int64_t heads = 8;       // GAT only
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

// Σ over incoming entries: out[dst] += weight · h[src]. h: [N, ...]; weight: [E'] or undefined
// (1); `entries`: bool [E'] selecting the entries to use, or undefined (all).
at::Tensor propagate(const GraphTensors& graph, const at::Tensor& h, const at::Tensor& weight,
                     const at::Tensor& entries = {});
// Per-entry weight `base` ([E']) times the edge mask of each entry (1 on added loops).
at::Tensor masked_entry_weight(const GraphTensors& graph, const at::Tensor& base,
                               const at::Tensor& edge_mask);
// Dropout on the values of a sparse COO matrix (inverted scaling, like torch dropout).
at::Tensor sparse_dropout(const at::Tensor& x, double p, bool training);
// Kept entries (non-zero mask, or all), for MACs.
double kept_entries(const GraphTensors& graph, const at::Tensor& edge_mask, bool with_added_loops);
double nonzeros(const at::Tensor& t);

}  // namespace sparsetrain::teddy
