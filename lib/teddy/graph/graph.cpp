// CSR construction and edge filtering for `Graph`; see graph.h.
#include "teddy/graph/graph.h"

#include <algorithm>

#include "common/error.h"

namespace sparsetrain::teddy {

namespace {

// Counting-sort fill of both directions, rows in edge-id order (deterministic, no sort needed).
void fill_csr(Graph& g) {
  const std::uint32_t n = g.num_nodes;
  g.offsets.assign(std::size_t{n} + 1, 0);
  g.num_self_loops = 0;
  for (const Edge& e : g.edges) {
    ++g.offsets[e.src + 1];
    if (e.src != e.dst)
      ++g.offsets[e.dst + 1];
    else
      ++g.num_self_loops;
  }
  for (std::uint32_t v = 0; v < n; ++v) g.offsets[v + 1] += g.offsets[v];
  const std::uint64_t entries = g.offsets[n];
  g.neighbors.assign(entries, 0);
  g.neighbor_edges.assign(entries, 0);
  std::vector<std::uint64_t> cursor(g.offsets.begin(), g.offsets.end() - 1);
  const std::uint32_t m = static_cast<std::uint32_t>(g.edges.size());
  for (std::uint32_t id = 0; id < m; ++id) {
    const Edge e = g.edges[id];
    std::uint64_t at = cursor[e.src]++;
    g.neighbors[at] = e.dst;
    g.neighbor_edges[at] = id;
    if (e.src != e.dst) {
      at = cursor[e.dst]++;
      g.neighbors[at] = e.src;
      g.neighbor_edges[at] = id;
    }
  }
}

// Marks every edge whose {src, dst} appeared at a lower id. Row-wise scan with a "last row that
// saw this neighbour" array: O(num_nodes + num_edges), no sort.
std::vector<std::uint8_t> find_duplicates(const Graph& g, std::uint64_t& count) {
  std::vector<std::uint8_t> dup(g.edges.size(), 0);
  std::vector<std::uint32_t> seen_by(g.num_nodes, UINT32_MAX);
  count = 0;
  for (std::uint32_t v = 0; v < g.num_nodes; ++v) {
    for (std::uint64_t i = g.offsets[v]; i < g.offsets[v + 1]; ++i) {
      const std::uint32_t u = g.neighbors[i];
      if (u < v) continue;  // each pair is checked once, in the row of its smaller end
      const std::uint32_t id = g.neighbor_edges[i];
      if (seen_by[u] == v) {
        // rows are in id order, so the first occurrence has the smaller id
        dup[id] = 1;
        ++count;
      } else {
        seen_by[u] = v;
      }
    }
  }
  return dup;
}

}  // namespace

std::uint64_t Graph::structure_bytes() const {
  return edges.size() * sizeof(Edge) + offsets.size() * sizeof(std::uint64_t) +
         neighbors.size() * sizeof(std::uint32_t) + neighbor_edges.size() * sizeof(std::uint32_t);
}

Graph build_graph(std::uint32_t num_nodes, std::vector<Edge> pairs, const BuildOptions& options,
                  BuildReport* report) {
  BuildReport local;
  BuildReport& rep = report ? *report : local;
  rep = BuildReport{};
  rep.input_edges = pairs.size();
  if (pairs.size() >= UINT32_MAX) {
    throw common::UsageError(options.source + ": " + std::to_string(pairs.size()) +
                                 " edges exceed the 2^32 - 1 edge ids of the CSR",
                             "split the graph or prune it first");
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    Edge e = pairs[i];
    if (e.src >= num_nodes || e.dst >= num_nodes) {
      throw common::UsageError(options.source + ": edge " + std::to_string(i) + " (" +
                                   std::to_string(e.src) + ", " + std::to_string(e.dst) +
                                   ") names a node >= the node count " + std::to_string(num_nodes),
                               "node ids are 0-based; check num-node-list.csv.gz");
    }
    if (e.src > e.dst) std::swap(e.src, e.dst);
    if (e.src == e.dst) {
      if (options.self_loops == SelfLoopPolicy::kError) {
        throw common::UsageError(options.source + ": edge " + std::to_string(i) +
                                     " is a self loop on node " + std::to_string(e.src),
                                 "pass --self-loops keep or drop");
      }
      if (options.self_loops == SelfLoopPolicy::kDrop) {
        ++rep.self_loops_dropped;
        continue;
      }
    }
    pairs[kept++] = e;
  }
  pairs.resize(kept);
  pairs.shrink_to_fit();

  Graph g;
  g.num_nodes = num_nodes;
  g.edges = std::move(pairs);
  fill_csr(g);
  if (options.duplicates == DuplicatePolicy::kKeep) return g;
  std::uint64_t dups = 0;
  const std::vector<std::uint8_t> dup = find_duplicates(g, dups);
  if (dups == 0) return g;
  if (options.duplicates == DuplicatePolicy::kError) {
    const auto first = static_cast<std::size_t>(std::find(dup.begin(), dup.end(), 1) - dup.begin());
    throw common::UsageError(options.source + ": edge {" + std::to_string(g.edges[first].src) +
                                 ", " + std::to_string(g.edges[first].dst) +
                                 "} appears more than once (" + std::to_string(dups) + " repeats)",
                             "pass --duplicates merge to keep the first of each");
  }
  rep.duplicates_merged = dups;
  std::size_t out = 0;
  for (std::size_t i = 0; i < g.edges.size(); ++i) {
    if (!dup[i]) g.edges[out++] = g.edges[i];
  }
  g.edges.resize(out);
  g.edges.shrink_to_fit();
  fill_csr(g);
  return g;
}

Graph filter_edges(const Graph& graph, const std::vector<std::uint8_t>& keep) {
  ST_ASSERT(keep.size() == graph.edges.size(), "keep mask must have one entry per edge");
  Graph g;
  g.num_nodes = graph.num_nodes;
  std::size_t count = 0;
  for (std::uint8_t k : keep) count += k != 0;
  g.edges.reserve(count);
  for (std::size_t i = 0; i < keep.size(); ++i) {
    if (keep[i]) g.edges.push_back(graph.edges[i]);
  }
  fill_csr(g);
  g.feature_dim = graph.feature_dim;
  g.features = graph.features;
  g.labels = graph.labels;
  g.splits = graph.splits;
  return g;
}

void check_node_split(const NodeSplit& split, std::uint32_t num_nodes, const std::string& name) {
  const std::string hint = "fix split/" + name +
                           "/{train,valid,test}.csv.gz: each part non-empty, "
                           "every node in one part at most, once";
  const std::pair<const char*, const std::vector<std::uint32_t>*> parts[] = {
      {"train", &split.train}, {"valid", &split.valid}, {"test", &split.test}};
  std::vector<std::uint8_t> part_of(num_nodes, 0);  // 0: none, else 1 + the part's index
  for (std::size_t p = 0; p < 3; ++p) {
    const auto& [part, ids] = parts[p];
    if (ids->empty()) {
      throw common::UsageError("split '" + name + "' has an empty " + part + " part", hint);
    }
    for (const std::uint32_t v : *ids) {
      ST_ASSERT(v < num_nodes, "split node id beyond the node count");  // the loader checks
      if (part_of[v] == p + 1) {
        throw common::UsageError(
            "split '" + name + "' lists node " + std::to_string(v) + " twice in " + part, hint);
      }
      if (part_of[v] != 0) {
        throw common::UsageError("split '" + name + "' puts node " + std::to_string(v) +
                                     " in both " + parts[part_of[v] - 1].first + " and " + part,
                                 hint);
      }
      part_of[v] = static_cast<std::uint8_t>(p + 1);
    }
  }
}

}  // namespace sparsetrain::teddy
