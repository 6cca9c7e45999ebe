// `GraphTensors`: a `Graph` (graph.h) laid out as LibTorch tensors for full-batch GNN training —
// the message-passing entries of the kept edges, GCN normalisation coefficients, sparse
// row-normalised node features, labels and one split. Not a graph format: it is rebuilt from the
// CSR for every edge mask (one per sparsity level) and never written out.
//
// Sparse products run on CSR tensors with their transposes precomputed (csr_matmul in
// gnn_model.h): on 2 CPU cores torch's CSR mm is ~10x faster than index_add_ and than COO mm.
//
// Entries: every kept undirected edge {u, v} with u != v gives two directed entries (u→v and
// v→u); a raw self loop {v, v} gives one. `src`/`dst` are sorted by dst (CSR row order), so
// aggregation sums over incoming entries. GCN and GAT additionally need a self loop on every node
// (PyG's add_remaining_self_loops): those entries are appended with edge id -1 and flagged in
// `added_loop`, so GIN (Σ over neighbours only) can leave them out.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "teddy/graph/graph.h"

namespace sparsetrain::teddy {

// Above this non-zero fraction the first layer's X·W runs dense: on 1 core of this machine,
// [2708, 1433]·[1433, 512] took 4.6 ms as CSR vs 29 ms dense at 1.3 % non-zeros (Cora), about
// even at 15-20 %, and 573 ms vs 44 ms fully dense (csbm's Gaussian features).
constexpr double kDenseFeatureDensity = 0.15;
// Dense features with more non-zeros than this are kept dense only (x, x_t, x_t_perm
// undefined); below it the CSR copy is kept too (it costs little, and tests compare the paths).
constexpr std::int64_t kCsrFeatureLimit = std::int64_t{1} << 24;

struct GraphTensors {
  std::int64_t num_nodes = 0;
  std::int64_t num_features = 0;
  std::int64_t num_classes = 0;
  std::int64_t num_edges = 0;  // undirected edges of the source graph (before the keep mask)

  // Features normalised as PyG's NormalizeFeatures (x - min(x), rows divided by max(sum, 1)).
  // x, x_t, x_t_perm are undefined for large dense features (kCsrFeatureLimit): x_dense only.
  at::Tensor x;         // [N, F] sparse CSR float32 (int32 indices unless nnz exceeds them)
  at::Tensor x_t;       // [F, N] sparse CSR, the transpose of x
  at::Tensor x_t_perm;  // [nnz] int64: x_t.values() == x.values()[x_t_perm]
  // [N, F] dense copy of x when more than kDenseFeatureDensity of it is non-zero (undefined
  // otherwise); feature_matmul then runs a dense mm.
  at::Tensor x_dense;
  at::Tensor labels;                          // [N] int64
  at::Tensor train_idx, valid_idx, test_idx;  // int64 node ids

  at::Tensor src, dst;   // [E'] int64 directed entries incl. added self loops, sorted by (dst, src)
  at::Tensor row_ptr;    // [N + 1] int64 CSR row pointers of the entries by dst
  at::Tensor t_perm;     // [E'] int64 entry ids sorted by (src, dst): the transpose's order
  at::Tensor t_row_ptr;  // [N + 1] int64 row pointers of the transpose (rows = src)
  // The CSR index arrays again as int32 (int64 when a count exceeds it), for the sparse products:
  // MKL's kernels take 32-bit indices and torch converts int64 ones on every call (18 % of a
  // Cora feature product).
  at::Tensor csr_row_ptr, csr_col;      // [N + 1], [E'] of the entries by dst (col = src)
  at::Tensor csr_t_row_ptr, csr_t_col;  // [N + 1], [E'] of the transpose (rows = src, col = dst)
  at::Tensor edge_id;     // [E'] int64 undirected edge id of each entry, -1 for added loops
  at::Tensor added_loop;  // [E'] bool
  at::Tensor gcn_norm;    // [E'] float32: d_dst^-1/2 · d_src^-1/2, d counted with all E' entries
  // [E'] float32: 1 / (own entries of dst), 0 on added loops — GraphSAGE's mean aggregation
  // (PyG's SAGEConv divides by the row's stored entries, a raw self loop being one of them).
  at::Tensor mean_norm;
  std::int64_t kept_edges = 0;  // undirected edges kept by the mask

  // Dense copy of x (PyG-style), for comparisons only.
  at::Tensor dense_features() const;
  // The same tensors with floating ones (x, gcn_norm, mean_norm) cast to `dtype` (tests use
  // float64).
  GraphTensors to(at::ScalarType dtype) const;
};

// Builds the tensors from `graph` (which must have features, labels and the split `split`),
// keeping the edges with keep[e] != 0 (all edges when keep is null). Throws UsageError when node
// data is missing.
GraphTensors make_graph_tensors(const Graph& graph, const std::vector<std::uint8_t>* keep,
                                const std::string& split = "public");

}  // namespace sparsetrain::teddy
