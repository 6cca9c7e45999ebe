// `Graph`: an undirected graph in CSR form with optional node data (features, labels, splits).
//
// Edges: each undirected edge {u, v} has a stable id e in [0, num_edges) — its position in the
// input (after duplicates were merged) — and is stored once in `edges` with src <= dst. The CSR
// holds both directions: row v lists every neighbour u with the id of the edge joining them; a
// self loop {v, v} appears once in row v, so degree(v) = row length = the row sum of the 0/1
// adjacency matrix with the loop on its diagonal (the convention of the official TEDDY code).
// Offsets are 64-bit (more than 4e9 entries are allowed), node and edge ids 32-bit.
//
// Memory: 8 bytes per edge in `edges` + 16 bytes per edge in the CSR (two directions × node id +
// edge id) + 8 bytes per node. Not a multigraph unless built with DuplicatePolicy::kKeep; no
// torch here (features are plain float32 rows) so the graph layer builds without LibTorch.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sparsetrain::teddy {

struct Edge {
  std::uint32_t src = 0;  // src <= dst
  std::uint32_t dst = 0;
  bool operator==(const Edge& o) const { return src == o.src && dst == o.dst; }
};

// A named node split (OGB `split/<name>/{train,valid,test}.csv.gz`), node ids ascending as read.
struct NodeSplit {
  std::vector<std::uint32_t> train, valid, test;
};

enum class DuplicatePolicy { kMerge, kKeep, kError };  // repeated {u, v} pairs
enum class SelfLoopPolicy { kKeep, kDrop, kError };    // {v, v} entries

struct BuildOptions {
  DuplicatePolicy duplicates = DuplicatePolicy::kMerge;
  SelfLoopPolicy self_loops = SelfLoopPolicy::kKeep;  // the official TEDDY loader keeps them
  std::string source = "graph";                       // names the input in error messages
};

// What building changed about the input: the caller reports it.
struct BuildReport {
  std::uint64_t input_edges = 0;        // pairs given to build_graph
  std::uint64_t duplicates_merged = 0;  // dropped repeats (kMerge)
  std::uint64_t self_loops_dropped = 0;
};

struct Graph {
  std::uint32_t num_nodes = 0;
  std::vector<Edge> edges;                    // [num_edges], index = edge id
  std::vector<std::uint64_t> offsets;         // [num_nodes + 1], into neighbors/neighbor_edges
  std::vector<std::uint32_t> neighbors;       // [offsets[num_nodes]]
  std::vector<std::uint32_t> neighbor_edges;  // [offsets[num_nodes]], edge id of each entry
  std::uint64_t num_self_loops = 0;

  std::uint32_t feature_dim = 0;
  std::vector<float> features;       // [num_nodes, feature_dim] row-major; empty when absent
  std::vector<std::int64_t> labels;  // [num_nodes]; empty when absent
  std::map<std::string, NodeSplit> splits;

  std::uint64_t num_edges() const { return edges.size(); }
  std::uint64_t degree(std::uint32_t v) const { return offsets[v + 1] - offsets[v]; }
  bool has_features() const { return feature_dim > 0; }
  // Bytes held by the structure (edges + CSR), for bytes-per-edge figures.
  std::uint64_t structure_bytes() const;
};

// Builds the CSR over `num_nodes` nodes from undirected pairs in any orientation (each pair once;
// the reverse direction is implied). Pairs are stored as src <= dst in input order. Throws
// UsageError naming options.source for ids >= num_nodes, more than 2^32 - 1 edges, or a duplicate
// or self loop the policy rejects. Node data is left empty.
Graph build_graph(std::uint32_t num_nodes, std::vector<Edge> pairs, const BuildOptions& options,
                  BuildReport* report = nullptr);

// Refuses a split that would train or score on nothing, or on the same node twice: UsageError
// naming split `name` for an empty train, valid or test part, a node id listed twice in a part,
// or a node in two parts (a test node also trained on), with the first such node.
void check_node_split(const NodeSplit& split, std::uint32_t num_nodes, const std::string& name);

// The subgraph of the edges with keep[e] != 0, on the same nodes, edge ids renumbered in order;
// features, labels and splits are copied.
Graph filter_edges(const Graph& graph, const std::vector<std::uint8_t>& keep);

}  // namespace sparsetrain::teddy
