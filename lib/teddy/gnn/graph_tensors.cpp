// Graph → tensors for GNN training (see graph_tensors.h).
#include "teddy/gnn/graph_tensors.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.h"

namespace sparsetrain::teddy {

namespace {

// int32 when every index and count fits, else int64 (see GraphTensors::csr_row_ptr).
at::ScalarType csr_index_type(std::int64_t largest) {
  return largest < std::numeric_limits<std::int32_t>::max() ? torch::kInt32 : torch::kInt64;
}

at::Tensor index_tensor(const std::vector<std::uint32_t>& ids) {
  std::vector<std::int64_t> v(ids.begin(), ids.end());
  return torch::tensor(v, torch::kInt64);
}

}  // namespace

namespace {

// t.x, t.x_t, t.x_t_perm, t.x_dense: the normalised node features.
void set_features(const Graph& graph, GraphTensors& t) {
  const std::int64_t n = t.num_nodes, f = t.num_features;
  // Row-normalised features as PyG's NormalizeFeatures: x - min(x) over the whole matrix, each
  // row divided by max(row sum, 1). For 0/1 bag-of-words features (Planetoid) the shift is 0 and
  // rows sum to 1; signed features (csbm's Gaussians) become non-negative instead of being divided
  // by row sums near 0. Stored as [N, F] CSR of the non-zeros.
  float shift = 0;
  if (!graph.features.empty()) {
    shift = *std::min_element(graph.features.begin(), graph.features.end());
  }
  std::int64_t nonzero = 0;
  for (const float x : graph.features) nonzero += x != shift;
  if (n * f > 0 && nonzero > kCsrFeatureLimit &&
      static_cast<double>(nonzero) / static_cast<double>(n * f) > kDenseFeatureDensity) {
    // Large and dense (ogbn-products: 2.4·10^8 values): the dense matrix only, filled row by row
    // (the CSR copy with its int64 triplets would take 5x the memory for nothing).
    t.x_dense = torch::empty({n, f}, torch::kFloat32);
    float* out = t.x_dense.data_ptr<float>();
    at::parallel_for(0, n, 1024, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t v = lo; v < hi; ++v) {
        const float* row = graph.features.data() + v * f;
        double sum = 0;
        for (std::int64_t j = 0; j < f; ++j) sum += static_cast<double>(row[j] - shift);
        const double scale = 1.0 / std::max(sum, 1.0);
        for (std::int64_t j = 0; j < f; ++j) {
          out[v * f + j] = static_cast<float>((row[j] - shift) * scale);
        }
      }
    });
    return;
  }
  std::vector<std::int64_t> rows, cols;
  std::vector<float> vals;
  for (std::int64_t v = 0; v < n; ++v) {
    const float* row = graph.features.data() + v * f;
    double sum = 0;
    for (std::int64_t j = 0; j < f; ++j) sum += static_cast<double>(row[j] - shift);
    const double scale = 1.0 / std::max(sum, 1.0);
    for (std::int64_t j = 0; j < f; ++j) {
      const float shifted = row[j] - shift;
      if (shifted != 0) {
        rows.push_back(v);
        cols.push_back(j);
        vals.push_back(static_cast<float>(shifted * scale));
      }
    }
  }
  const auto nnz = static_cast<std::int64_t>(vals.size());
  {
    std::vector<std::int64_t> crow(static_cast<std::size_t>(n) + 1, 0),
        tcrow(static_cast<std::size_t>(f) + 1, 0);
    for (std::int64_t r : rows) ++crow[static_cast<std::size_t>(r) + 1];
    for (std::int64_t c : cols) ++tcrow[static_cast<std::size_t>(c) + 1];
    for (std::size_t i = 1; i < crow.size(); ++i) crow[i] += crow[i - 1];
    for (std::size_t i = 1; i < tcrow.size(); ++i) tcrow[i] += tcrow[i - 1];
    // Counting sort by column (stable, so rows stay ascending within a column).
    std::vector<std::int64_t> next(tcrow.begin(), tcrow.end() - 1), perm(vals.size()),
        tcol(vals.size());
    for (std::int64_t i = 0; i < nnz; ++i) {
      const std::int64_t at = next[static_cast<std::size_t>(cols[i])]++;
      perm[at] = i;
      tcol[at] = rows[i];
    }
    at::Tensor values = torch::tensor(vals).view({nnz});
    const at::ScalarType index_type = csr_index_type(std::max({nnz, n, f}));
    auto idx = [&](const std::vector<std::int64_t>& v) {
      return torch::tensor(v).view({static_cast<std::int64_t>(v.size())}).to(index_type);
    };
    t.x = torch::sparse_csr_tensor(
        idx(crow), idx(cols), values, {n, f},
        torch::TensorOptions().dtype(torch::kFloat32).layout(torch::kSparseCsr));
    t.x_t_perm = torch::tensor(perm).view({nnz});
    t.x_t = torch::sparse_csr_tensor(
        idx(tcrow), idx(tcol), values.index_select(0, t.x_t_perm), {f, n},
        torch::TensorOptions().dtype(torch::kFloat32).layout(torch::kSparseCsr));
    if (n * f > 0 && static_cast<double>(nnz) / static_cast<double>(n * f) > kDenseFeatureDensity) {
      t.x_dense = t.x.to_dense();
    }
  }
}

// t.edge_*, t.src/dst, t.gcn_norm, t.mean_norm, the CSR index tensors: the kept edges plus self
// loops. Rows (one per dst, in node order) hold the node's kept CSR entries sorted by src (ties
// in edge-id order) with an added self loop where the node has none; each row is filled on its
// own, in parallel, straight into the tensors (a graph of 10^8 entries: no per-entry vectors,
// no global sort).
void set_adjacency(const Graph& graph, const std::vector<std::uint8_t>* keep, GraphTensors& t) {
  const std::int64_t n = t.num_nodes;
  const auto kept = [&](std::uint32_t e) { return keep == nullptr || (*keep)[e] != 0; };
  // Row sizes: the kept entries, plus the added loop.
  at::Tensor row_ptr = torch::empty({n + 1}, torch::kInt64);
  std::int64_t* rp = row_ptr.data_ptr<std::int64_t>();
  std::vector<std::uint8_t> needs_loop(static_cast<std::size_t>(n));
  rp[0] = 0;
  at::parallel_for(0, n, 4096, [&](std::int64_t lo, std::int64_t hi) {
    for (std::int64_t v = lo; v < hi; ++v) {
      std::int64_t count = 0;
      bool has_loop = false;
      for (std::uint64_t k = graph.offsets[v]; k < graph.offsets[v + 1]; ++k) {
        if (!kept(graph.neighbor_edges[k])) continue;
        ++count;
        has_loop |= graph.neighbors[k] == static_cast<std::uint32_t>(v);
      }
      needs_loop[static_cast<std::size_t>(v)] = !has_loop;
      rp[v + 1] = count + (has_loop ? 0 : 1);
    }
  });
  for (std::int64_t v = 0; v < n; ++v) rp[v + 1] += rp[v];
  const std::int64_t entries = rp[n];
  at::Tensor src = torch::empty({entries}, torch::kInt64),
             dst = torch::empty({entries}, torch::kInt64);
  at::Tensor eid = torch::empty({entries}, torch::kInt64);
  at::Tensor added = torch::empty({entries}, torch::kBool);
  std::int64_t* sp = src.data_ptr<std::int64_t>();
  std::int64_t* dp = dst.data_ptr<std::int64_t>();
  std::int64_t* ep = eid.data_ptr<std::int64_t>();
  bool* ap = added.data_ptr<bool>();
  at::parallel_for(0, n, 4096, [&](std::int64_t lo, std::int64_t hi) {
    std::vector<std::pair<std::int64_t, std::int64_t>> row;  // (src, edge id), -1 = added loop
    for (std::int64_t v = lo; v < hi; ++v) {
      row.clear();
      for (std::uint64_t k = graph.offsets[v]; k < graph.offsets[v + 1]; ++k) {
        const std::uint32_t e = graph.neighbor_edges[k];
        if (kept(e)) row.emplace_back(graph.neighbors[k], e);
      }
      if (needs_loop[static_cast<std::size_t>(v)]) row.emplace_back(v, -1);
      // by src; CSR rows are in edge-id order already and the loop last: stable keeps that
      std::stable_sort(row.begin(), row.end(),
                       [](const auto& a, const auto& b) { return a.first < b.first; });
      std::int64_t at = rp[v];
      for (const auto& [u, e] : row) {
        sp[at] = u;
        dp[at] = v;
        ep[at] = e;
        ap[at] = e < 0;
        ++at;
      }
    }
  });
  std::vector<std::uint8_t>().swap(needs_loop);
  // Degrees: every entry (GCN, with the added loops); own entries (GraphSAGE's mean, without).
  // Computed as (1 / sqrt(d_dst)) / sqrt(d_src) in float64, then rounded once to float32.
  const at::Tensor deg = row_ptr.slice(0, 1).sub(row_ptr.slice(0, 0, n)).to(torch::kFloat64);
  const at::Tensor added_per_row =
      torch::zeros({n}, torch::kFloat64).index_add_(0, dst, added.to(torch::kFloat64));
  const at::Tensor own = deg - added_per_row;
  const at::Tensor sqrt_deg = deg.sqrt();
  t.gcn_norm = (sqrt_deg.reciprocal().index_select(0, dst) / sqrt_deg.index_select(0, src))
                   .to(torch::kFloat32);
  t.mean_norm =
      torch::where(added, torch::zeros({}, torch::kFloat64), own.reciprocal().index_select(0, dst))
          .to(torch::kFloat32);
  // The transpose: entries ordered by (src, dst), a stable counting sort by src.
  at::Tensor t_row_ptr = torch::zeros({n + 1}, torch::kInt64);
  std::int64_t* tp = t_row_ptr.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < entries; ++i) ++tp[sp[i] + 1];
  for (std::int64_t v = 0; v < n; ++v) tp[v + 1] += tp[v];
  at::Tensor t_perm = torch::empty({entries}, torch::kInt64);
  {
    std::int64_t* pp = t_perm.data_ptr<std::int64_t>();
    std::vector<std::int64_t> next(tp, tp + n);
    for (std::int64_t i = 0; i < entries; ++i) pp[next[static_cast<std::size_t>(sp[i])]++] = i;
  }
  t.kept_edges = 0;
  if (keep == nullptr) {
    t.kept_edges = static_cast<std::int64_t>(graph.num_edges());
  } else {
    for (const std::uint8_t k : *keep) t.kept_edges += k != 0;
  }
  t.row_ptr = row_ptr;
  t.t_row_ptr = t_row_ptr;
  t.t_perm = t_perm;
  t.src = src;
  t.dst = dst;
  t.edge_id = eid;
  t.added_loop = added;
  const at::ScalarType index_type = csr_index_type(std::max(entries, n));
  t.csr_row_ptr = t.row_ptr.to(index_type);
  t.csr_col = t.src.to(index_type);
  t.csr_t_row_ptr = t.t_row_ptr.to(index_type);
  t.csr_t_col = t.dst.index_select(0, t.t_perm).to(index_type);
}

}  // namespace

GraphTensors make_graph_tensors(const Graph& graph, const std::vector<std::uint8_t>* keep,
                                const std::string& split) {
  if (!graph.has_features() || graph.labels.size() != graph.num_nodes) {
    throw common::UsageError("graph has no node features or labels",
                             "GNN training needs raw/node-feat.csv.gz and raw/node-label.csv.gz");
  }
  const auto s = graph.splits.find(split);
  if (s == graph.splits.end()) {
    throw common::UsageError("graph has no split '" + split + "'",
                             "GNN training needs split/" + split + "/{train,valid,test}.csv.gz");
  }
  check_node_split(s->second, graph.num_nodes, split);
  const std::int64_t n = graph.num_nodes;
  const std::int64_t f = graph.feature_dim;
  GraphTensors t;
  t.num_nodes = n;
  t.num_features = f;
  t.num_edges = static_cast<std::int64_t>(graph.num_edges());
  set_features(graph, t);

  t.labels = torch::tensor(graph.labels, torch::kInt64);
  std::int64_t max_label = 0;
  for (std::int64_t y : graph.labels) max_label = std::max(max_label, y);
  t.num_classes = max_label + 1;
  t.train_idx = index_tensor(s->second.train);
  t.valid_idx = index_tensor(s->second.valid);
  t.test_idx = index_tensor(s->second.test);
  set_adjacency(graph, keep, t);
  return t;
}

at::Tensor GraphTensors::dense_features() const { return x.defined() ? x.to_dense() : x_dense; }

namespace {
at::Tensor csr_to(const at::Tensor& a, at::ScalarType dtype) {
  return torch::sparse_csr_tensor(a.crow_indices(), a.col_indices(), a.values().to(dtype),
                                  a.sizes(),
                                  torch::TensorOptions().dtype(dtype).layout(torch::kSparseCsr));
}
}  // namespace

GraphTensors GraphTensors::to(at::ScalarType dtype) const {
  GraphTensors t = *this;
  if (x.defined()) {
    t.x = csr_to(x, dtype);
    t.x_t = csr_to(x_t, dtype);
  }
  if (x_dense.defined()) t.x_dense = x_dense.to(dtype);
  t.gcn_norm = gcn_norm.to(dtype);
  t.mean_norm = mean_norm.to(dtype);
  return t;
}

}  // namespace sparsetrain::teddy
