// Graph → tensors for GNN training (see graph_tensors.h).
#include "teddy/gnn/graph_tensors.h"

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
// loops.
void set_adjacency(const Graph& graph, const std::vector<std::uint8_t>* keep, GraphTensors& t) {
  const std::int64_t n = t.num_nodes;
  // Entries in CSR row order (row = dst), then an added self loop for nodes that lack one.
  std::vector<std::int64_t> src, dst, eid;
  std::vector<std::uint8_t> added;
  std::vector<std::int64_t> deg(static_cast<std::size_t>(n), 0);
  std::vector<std::uint8_t> kept_edge(graph.num_edges(), 0);
  for (std::int64_t v = 0; v < n; ++v) {
    bool has_loop = false;
    for (std::uint64_t k = graph.offsets[v]; k < graph.offsets[v + 1]; ++k) {
      const std::uint32_t e = graph.neighbor_edges[k];
      if (keep && !(*keep)[e]) continue;
      kept_edge[e] = 1;
      const std::uint32_t u = graph.neighbors[k];
      has_loop |= u == static_cast<std::uint32_t>(v);
      src.push_back(u);
      dst.push_back(v);
      eid.push_back(e);
      added.push_back(0);
    }
    if (!has_loop) {
      src.push_back(v);
      dst.push_back(v);
      eid.push_back(-1);
      added.push_back(1);
    }
  }
  // Sort each row by src (CSR rows need not be sorted; the added loop was appended last).
  {
    std::vector<std::size_t> order(src.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      return dst[a] != dst[b] ? dst[a] < dst[b] : src[a] < src[b];
    });
    auto permute = [&](auto& v) {
      auto copy = v;
      for (std::size_t i = 0; i < order.size(); ++i) v[i] = copy[order[i]];
    };
    permute(src);
    permute(dst);
    permute(eid);
    permute(added);
  }
  for (std::int64_t d : dst) ++deg[static_cast<std::size_t>(d)];
  std::vector<float> norm(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    norm[i] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(deg[dst[i]])) /
                                 std::sqrt(static_cast<double>(deg[src[i]])));
  }
  // GraphSAGE's mean over the graph's own entries (the added loops weigh 0): 1 / their count.
  std::vector<std::int64_t> own_deg(deg);
  for (std::size_t i = 0; i < src.size(); ++i)
    own_deg[static_cast<std::size_t>(dst[i])] -= added[i];
  std::vector<float> mean(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    mean[i] = added[i] ? 0.0f : static_cast<float>(1.0 / static_cast<double>(own_deg[dst[i]]));
  }
  for (std::uint8_t k : kept_edge) t.kept_edges += k;
  std::vector<std::int64_t> row_ptr(static_cast<std::size_t>(n) + 1, 0), t_row_ptr(row_ptr);
  for (std::size_t i = 0; i < src.size(); ++i) {
    ++row_ptr[static_cast<std::size_t>(dst[i]) + 1];
    ++t_row_ptr[static_cast<std::size_t>(src[i]) + 1];
  }
  for (std::size_t i = 1; i < row_ptr.size(); ++i) {
    row_ptr[i] += row_ptr[i - 1];
    t_row_ptr[i] += t_row_ptr[i - 1];
  }
  std::vector<std::int64_t> t_perm(src.size());
  {
    std::vector<std::int64_t> next(t_row_ptr.begin(), t_row_ptr.end() - 1);
    for (std::size_t i = 0; i < src.size(); ++i)
      t_perm[next[src[i]]++] = static_cast<std::int64_t>(i);
  }
  t.row_ptr = torch::tensor(row_ptr);
  t.t_row_ptr = torch::tensor(t_row_ptr);
  t.t_perm = torch::tensor(t_perm);
  t.src = torch::tensor(src, torch::kInt64);
  t.dst = torch::tensor(dst, torch::kInt64);
  t.edge_id = torch::tensor(eid, torch::kInt64);
  t.added_loop = torch::tensor(std::vector<std::int64_t>(added.begin(), added.end()), torch::kInt64)
                     .to(torch::kBool);
  t.gcn_norm = torch::tensor(norm);
  t.mean_norm = torch::tensor(mean);
  const at::ScalarType index_type =
      csr_index_type(std::max(static_cast<std::int64_t>(src.size()), n));
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

at::Tensor GraphTensors::dense_features() const { return x.to_dense(); }

namespace {
at::Tensor csr_to(const at::Tensor& a, at::ScalarType dtype) {
  return torch::sparse_csr_tensor(a.crow_indices(), a.col_indices(), a.values().to(dtype),
                                  a.sizes(),
                                  torch::TensorOptions().dtype(dtype).layout(torch::kSparseCsr));
}
}  // namespace

GraphTensors GraphTensors::to(at::ScalarType dtype) const {
  GraphTensors t = *this;
  t.x = csr_to(x, dtype);
  t.x_t = csr_to(x_t, dtype);
  if (x_dense.defined()) t.x_dense = x_dense.to(dtype);
  t.gcn_norm = gcn_norm.to(dtype);
  t.mean_norm = mean_norm.to(dtype);
  return t;
}

}  // namespace sparsetrain::teddy
