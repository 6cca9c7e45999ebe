// Selecting the undirected edges to prune: the k lowest-scoring pairs, for one sparsity or for a
// list of increasing sparsities at once (nested masks from one score).
//
// Order: edges are ranked by (score as float32, then edge id), ascending; the key of edge e is
// (order-preserving bits of its float32 score) << 32 | e, so keys are unique and the tie-break is
// total and deterministic. Level i prunes the k_i = floor(s_i · m) lowest-ranked edges (m = all
// undirected edges, self loops included, as the official code counts nnz), capped at the number of
// edges with a finite score (self loops score +inf and are never pruned). Each level is a prefix
// of the same order, so the pruned sets are nested. Whole pairs are pruned: unlike the official
// code's top-k over directed entries, a pair never loses just one direction.
//
// Cost: O(m) — a parallel 16-bit radix histogram of the keys, one parallel gather of the buckets
// that hold the thresholds, std::nth_element inside them, then one parallel pass assigning levels
// from a per-bucket table (a search only inside the buckets that hold a threshold).
// Memory: 1 byte per edge of levels (keys are recomputed from the scores in each pass) plus the
// buckets that hold the thresholds.
#pragma once

#include <cstdint>
#include <vector>

#include "teddy/prune/edge_scorer.h"

namespace sparsetrain::teddy {

// The papers' schedule: level k = 1..20 → graph sparsity 1 - 0.95^k.
std::vector<double> paper_graph_sparsities();

// k = floor(s · num_edges), capped at num_prunable. Throws UsageError unless 0 <= s <= 1.
std::uint64_t pruned_edge_count(double sparsity, std::uint64_t num_edges,
                                std::uint64_t num_prunable);

struct EdgeLevels {
  std::vector<double> sparsities;     // [L] requested, ascending
  std::vector<std::uint64_t> counts;  // [L] edges pruned at each level (cumulative)
  // [num_edges]: 1-based index of the first level at which the edge is pruned; 0 = never pruned.
  std::vector<std::uint8_t> level;

  // keep mask for level i (0-based): keep[e] = 1 unless pruned at level i or earlier.
  std::vector<std::uint8_t> keep_mask(std::size_t i) const;
};

// scores: [m] (finite, or +inf for never). sparsities: ascending, at most 255 of them. Throws
// UsageError for an unsorted or out-of-range list.
EdgeLevels select_pruned_edges(const float* scores, std::size_t count,
                               const std::vector<double>& sparsities);
inline EdgeLevels select_pruned_edges(const EdgeScores& scores,
                                      const std::vector<double>& sparsities) {
  return select_pruned_edges(scores.data(), scores.size(), sparsities);
}
inline EdgeLevels select_pruned_edges(const std::vector<float>& scores,
                                      const std::vector<double>& sparsities) {
  return select_pruned_edges(scores.data(), scores.size(), sparsities);
}

// The selection key of one edge (exposed for tests and the reference check).
std::uint64_t edge_selection_key(float score, std::uint32_t edge_id);

}  // namespace sparsetrain::teddy
