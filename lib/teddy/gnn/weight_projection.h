// Weight sparsity for GNN tickets: the l0 projection TEDDY applies after every optimizer step
// (one global magnitude cut over a parameter set), and the mask selection the baselines use
// (random masks, UGS's mask-magnitude pruning). Not a general pruning library.
//
// Exactness: `lowest_k_masks` zeroes exactly k entries — the k smallest scores over the
// concatenation of all tensors, ties broken by position (earlier tensor, then lower flat index,
// is zeroed first) — with O(n) selection (kthvalue), not a sort.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "teddy/gnn/gnn_model.h"

namespace sparsetrain::teddy {

enum class ProjectionSet {
  kAll,      // every parameter (official TEDDY: includes GAT attention vectors and GIN's ε)
  kWeights,  // the weight matrices only
};
ProjectionSet parse_projection_set(const std::string& name);  // "all" | "weights"

std::vector<at::Tensor> projection_parameters(GnnModelImpl& model, ProjectionSet set);
std::int64_t total_numel(const std::vector<at::Tensor>& tensors);

// ceil(n · s) (with a 1e-9 guard against 0.2 · 10 = 2.0000000004). Throws UsageError unless
// 0 <= s <= 1.
std::int64_t zero_count(std::int64_t n, double sparsity);

// 0/1 masks (same shapes and dtype as `scores`) zeroing exactly k of the lowest scores.
std::vector<at::Tensor> lowest_k_masks(const std::vector<at::Tensor>& scores, std::int64_t k);

// The l0 projection: zeroes, in place and without autograd, exactly zero_count(n, sparsity) of
// the smallest-magnitude entries over all of `params` (n = their total size).
void project_l0(const std::vector<at::Tensor>& params, double sparsity);

// Masks zeroing exactly zero_count(n, sparsity) entries chosen uniformly at random (seeded).
std::vector<at::Tensor> random_masks(const std::vector<at::Tensor>& params, double sparsity,
                                     std::uint64_t seed);

// Fraction of exact zeros over all of `tensors`.
double zero_fraction(const std::vector<at::Tensor>& tensors);

}  // namespace sparsetrain::teddy
