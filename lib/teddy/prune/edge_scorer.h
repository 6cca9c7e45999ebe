// Edge scorers: one score per undirected edge, behind one interface, for one-shot edge pruning
// (the lowest scores are pruned first, see edge_selection.h).
//
//   teddy   the official TEDDY formula (hyunjin72/TEDDY, DESIGN.md): with A the symmetric 0/1
//           adjacency including self loops on the diagonal and d = A·1,
//             g[v] = d_v^-2 · Σ_{u ∈ N(v)} d_u^-1/2   (0 when d_v = 0),   score(i, j) = g[i]·g[j]
//           computed in float64 and rounded once to float32 (the official code works in float32).
//   degree  1 / (d_i · d_j): a structural baseline that, like TEDDY, prunes hub-hub edges first.
//   random  a uniform value in [0, 1) from a hash of (seed, edge id): independent of threads.
// For every scorer a self loop scores +inf, so no self loop is ever pruned.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/default_init_allocator.h"
#include "teddy/graph/graph.h"

namespace sparsetrain::teddy {

// One score per edge: [num_edges]. Scorers fill every entry in a parallel loop, so the array is
// not zero-filled first (common/default_init_allocator.h).
using EdgeScores = std::vector<float, common::DefaultInitAllocator<float>>;

class EdgeScorer {
 public:
  virtual ~EdgeScorer() = default;
  virtual std::string name() const = 0;
  // scores: [graph.num_edges()], finite except +inf for self loops.
  virtual EdgeScores score(const Graph& graph) const = 0;
};

// "teddy" | "degree" | "random"; throws UsageError naming the choices otherwise.
std::unique_ptr<EdgeScorer> make_edge_scorer(const std::string& name, std::uint64_t seed);
// The names make_edge_scorer accepts, for --help and checks.
std::vector<std::string> edge_scorer_names();

// The TEDDY node factor g (float64, [num_nodes]); exposed for tests.
std::vector<double> teddy_node_factors(const Graph& graph);

}  // namespace sparsetrain::teddy
