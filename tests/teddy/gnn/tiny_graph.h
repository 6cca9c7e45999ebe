// A tiny labelled graph with features and a split, built by code, for the GNN tests.
#pragma once

#include <torch/torch.h>

#include "teddy/graph/graph.h"

namespace sparsetrain::teddy::test {

// 7 nodes, 9 undirected edges plus a raw self loop on node 3, 5 features (some zero), 3 classes.
inline Graph tiny_graph() {
  std::vector<Edge> pairs = {{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5},
                             {5, 6}, {0, 6}, {1, 4}, {2, 5}, {3, 3}};
  Graph g = build_graph(7, pairs, BuildOptions{});
  g.feature_dim = 5;
  torch::manual_seed(7);
  at::Tensor x = torch::rand({7, 5});
  x = x * (x > 0.4).to(torch::kFloat32);  // sparse-ish rows
  g.features.assign(x.data_ptr<float>(), x.data_ptr<float>() + 35);
  g.labels = {0, 1, 2, 0, 1, 2, 0};
  g.splits["public"] = NodeSplit{{0, 1, 2}, {3, 4}, {5, 6}};
  return g;
}

}  // namespace sparsetrain::teddy::test
