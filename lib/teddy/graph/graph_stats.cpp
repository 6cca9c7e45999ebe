// Graph statistics; see graph_stats.h.
#include "teddy/graph/graph_stats.h"

#include <algorithm>
#include <boost/pending/disjoint_sets.hpp>
#include <cmath>
#include <vector>

#include "common/error.h"

namespace sparsetrain::teddy {

GraphStats compute_graph_stats(const Graph& g, const std::vector<std::uint8_t>* keep) {
  ST_ASSERT(keep == nullptr || keep->size() == g.num_edges(),
            "keep mask must have one entry per edge");
  const auto kept = [&](std::size_t e) { return keep == nullptr || (*keep)[e] != 0; };
  GraphStats s;
  s.num_nodes = g.num_nodes;
  std::vector<std::uint64_t> degrees(g.num_nodes, 0);
  for (std::size_t e = 0; e < g.edges.size(); ++e) {
    if (!kept(e)) continue;
    const Edge edge = g.edges[e];
    ++s.num_edges;
    ++degrees[edge.src];
    if (edge.src != edge.dst)
      ++degrees[edge.dst];
    else
      ++s.num_self_loops;
  }
  s.feature_dim = g.feature_dim;
  // what the CSR of exactly these edges takes (graph.h): 8 per edge + 8 per CSR entry + offsets
  std::uint64_t entries = 0;
  for (std::uint64_t d : degrees) entries += d;
  s.structure_bytes = 8 * s.num_edges + 8 * entries + 8 * (std::uint64_t{g.num_nodes} + 1);
  for (std::int64_t label : g.labels)
    s.num_classes = std::max<std::uint64_t>(s.num_classes, static_cast<std::uint64_t>(label) + 1);
  if (g.num_nodes == 0) return s;

  std::vector<std::uint32_t> rank(g.num_nodes, 0);
  std::vector<std::uint32_t> parent(g.num_nodes);
  boost::disjoint_sets<std::uint32_t*, std::uint32_t*> sets(rank.data(), parent.data());
  for (std::uint32_t v = 0; v < g.num_nodes; ++v) sets.make_set(v);
  for (std::size_t e = 0; e < g.edges.size(); ++e) {
    if (kept(e)) sets.union_set(g.edges[e].src, g.edges[e].dst);
  }
  std::vector<std::uint32_t> size(g.num_nodes, 0);  // reuses no memory of rank: rank is still live
  for (std::uint32_t v = 0; v < g.num_nodes; ++v) ++size[sets.find_set(v)];
  for (std::uint32_t v = 0; v < g.num_nodes; ++v) {
    if (size[v] > 0) {
      ++s.connected_components;
      s.largest_component = std::max<std::uint64_t>(s.largest_component, size[v]);
    }
  }
  double sum = 0;
  for (std::uint32_t v = 0; v < g.num_nodes; ++v) {
    sum += static_cast<double>(degrees[v]);
    s.isolated_nodes += degrees[v] == 0;
  }
  s.degree_mean = sum / g.num_nodes;
  const auto [lo, hi] = std::minmax_element(degrees.begin(), degrees.end());
  s.degree_min = *lo;
  s.degree_max = *hi;
  const std::size_t mid = (degrees.size() - 1) / 2;
  std::nth_element(degrees.begin(), degrees.begin() + static_cast<std::ptrdiff_t>(mid),
                   degrees.end());
  s.degree_median = degrees[mid];
  const auto p99 =
      static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(degrees.size()))) - 1;
  std::nth_element(degrees.begin(), degrees.begin() + static_cast<std::ptrdiff_t>(p99),
                   degrees.end());
  s.degree_p99 = degrees[p99];
  return s;
}

nlohmann::json to_json(const GraphStats& s) {
  return {{"nodes", s.num_nodes},
          {"edges", s.num_edges},
          {"self_loops", s.num_self_loops},
          {"connected_components", s.connected_components},
          {"largest_component_nodes", s.largest_component},
          {"isolated_nodes", s.isolated_nodes},
          {"degree",
           {{"min", s.degree_min},
            {"max", s.degree_max},
            {"mean", s.degree_mean},
            {"median", s.degree_median},
            {"p99", s.degree_p99}}},
          {"feature_dim", s.feature_dim},
          {"classes", s.num_classes},
          {"structure_bytes", s.structure_bytes}};
}

}  // namespace sparsetrain::teddy
