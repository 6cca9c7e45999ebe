// Summary statistics of a graph for `graph stats` and the records of `teddy prune`: counts,
// connected components (union-find from Boost's disjoint_sets over the edge list, O(m α(n)),
// 8 bytes per node), isolated nodes and degree statistics. Not a plotting or analysis library.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "teddy/graph/graph.h"

namespace sparsetrain::teddy {

struct GraphStats {
  std::uint64_t num_nodes = 0;
  std::uint64_t num_edges = 0;  // undirected, self loops included
  std::uint64_t num_self_loops = 0;
  std::uint64_t connected_components = 0;  // isolated nodes count as components
  std::uint64_t largest_component = 0;     // nodes
  std::uint64_t isolated_nodes = 0;        // degree 0
  std::uint64_t degree_min = 0, degree_max = 0;
  double degree_mean = 0;
  std::uint64_t degree_median = 0;  // lower median
  std::uint64_t degree_p99 = 0;     // 99th percentile (nearest rank)
  std::uint64_t feature_dim = 0;
  std::uint64_t num_classes = 0;      // max label + 1, 0 without labels
  std::uint64_t structure_bytes = 0;  // edges + CSR
};

// Statistics of `graph`, or of its subgraph of the edges with (*keep)[e] != 0 (same nodes) without
// building that subgraph: 16 bytes per node of extra memory either way.
GraphStats compute_graph_stats(const Graph& graph, const std::vector<std::uint8_t>* keep = nullptr);
nlohmann::json to_json(const GraphStats& stats);

}  // namespace sparsetrain::teddy
