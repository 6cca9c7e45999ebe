// TEDDY edge scores on Cora and CiteSeer against an independent dense LibTorch computation of the
// official formula (A symmetric 0/1 with loops on the diagonal, d = A·1,
// g = d^-2 ⊙ (A · d^-1/2), score(i,j) = g_i g_j), with the edge files read here by zlib directly,
// not through graph_io; and the pruned pair sets at the 20 paper levels 1 - 0.95^k, which must be
// identical to the k lowest (float32 score, edge id) pairs of the reference.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include "teddy/graph/graph_io.h"
#include "teddy/prune/edge_scorer.h"
#include "teddy/prune/edge_selection.h"

using namespace sparsetrain;

namespace {

std::vector<std::pair<long, long>> read_edges_with_zlib(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  std::vector<std::pair<long, long>> edges;
  char line[256];
  while (gzgets(f, line, sizeof line)) {
    long a = 0, b = 0;
    REQUIRE(std::sscanf(line, "%ld,%ld", &a, &b) == 2);
    edges.emplace_back(a, b);
  }
  gzclose(f);
  return edges;
}

void check_dataset(const std::string& name) {
  const std::string dir = std::string(SPARSETRAIN_SHARED_DATA) + "/" + name;
  const auto edges = read_edges_with_zlib(dir + "/raw/edge.csv.gz");
  const teddy::Graph g = teddy::load_graph(dir, {});
  const long n = g.num_nodes;
  const long m = static_cast<long>(edges.size());
  REQUIRE(static_cast<std::uint64_t>(m) == g.num_edges());

  // Dense float64 reference.
  torch::NoGradGuard no_grad;
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor src = torch::empty({m}, torch::kLong), dst = torch::empty({m}, torch::kLong);
  for (long e = 0; e < m; ++e) {
    src[e] = edges[static_cast<std::size_t>(e)].first;
    dst[e] = edges[static_cast<std::size_t>(e)].second;
  }
  torch::Tensor A = torch::zeros({n, n}, opts);  // [n, n]
  A.index_put_({src, dst}, 1.0);
  A.index_put_({dst, src}, 1.0);
  torch::Tensor d = A.sum(1);                                                        // [n]
  torch::Tensor dinv_sqrt = torch::where(d > 0, d.pow(-0.5), torch::zeros_like(d));  // [n]
  torch::Tensor g_ref = torch::where(d > 0, d.pow(-2) * A.matmul(dinv_sqrt), torch::zeros_like(d));
  torch::Tensor ref = (g_ref.index({src}) * g_ref.index({dst})).to(torch::kFloat32);  // [m]

  const teddy::EdgeScores ours = teddy::make_edge_scorer("teddy", 0)->score(g);
  torch::Tensor ours_t =
      torch::from_blob(const_cast<float*>(ours.data()), {m}, torch::kFloat32).clone();
  const double max_rel = ((ours_t - ref).abs() / ref.abs()).max().item<double>();
  MESSAGE(name << ": max relative score difference " << max_rel);
  CHECK(max_rel < 1e-6);

  // Reference pair sets: sort by (reference float32 score, edge id).
  const float* r = ref.data_ptr<float>();
  std::vector<long> order(static_cast<std::size_t>(m));
  std::iota(order.begin(), order.end(), 0L);
  std::sort(order.begin(), order.end(),
            [&](long a, long b) { return r[a] < r[b] || (r[a] == r[b] && a < b); });
  const auto sparsities = teddy::paper_graph_sparsities();
  const auto lv = teddy::select_pruned_edges(ours, sparsities);
  int identical = 0;
  for (std::size_t i = 0; i < sparsities.size(); ++i) {
    const auto k = static_cast<long>(std::floor(sparsities[i] * static_cast<double>(m)));
    std::vector<std::uint8_t> expected(static_cast<std::size_t>(m), 1);
    for (long j = 0; j < k; ++j)
      expected[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])] = 0;
    const bool same = lv.keep_mask(i) == expected;
    CAPTURE(i);
    CHECK(same);
    identical += same;
  }
  MESSAGE(name << ": " << identical << " of 20 paper levels prune identical pair sets");
}

}  // namespace

TEST_CASE(
    "TEDDY scores and paper-level pair sets on Cora and CiteSeer match a dense LibTorch "
    "reference") {
  if (!std::filesystem::exists(std::string(SPARSETRAIN_SHARED_DATA) + "/cora/raw/edge.csv.gz")) {
    MESSAGE("no shared data; skipping");
    std::exit(77);
  }
  check_dataset("cora");
  check_dataset("citeseer");
}
