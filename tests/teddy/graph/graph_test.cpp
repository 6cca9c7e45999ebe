// CSR construction: both directions present with matching edge ids, self loops once, duplicate
// and self-loop policies, edge filtering with renumbered ids, and the statistics.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "common/atomic_file.h"
#include "common/error.h"
#include "teddy/graph/graph_generator.h"
#include "teddy/graph/graph_io.h"
#include "teddy/graph/graph_stats.h"
#include "teddy/test_graphs.h"

using namespace sparsetrain;
using test::Edge;

namespace {
// Every CSR entry (v, u, e) has its mirror (u, v, e) and e joins {u, v}.
bool csr_is_symmetric(const teddy::Graph& g) {
  std::multiset<std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>> entries;
  for (std::uint32_t v = 0; v < g.num_nodes; ++v) {
    for (std::uint64_t i = g.offsets[v]; i < g.offsets[v + 1]; ++i) {
      const Edge e = g.edges[g.neighbor_edges[i]];
      if (!((e.src == v && e.dst == g.neighbors[i]) || (e.dst == v && e.src == g.neighbors[i])))
        return false;
      entries.insert({v, g.neighbors[i], g.neighbor_edges[i]});
    }
  }
  for (const auto& [v, u, e] : entries) {
    if (entries.count({u, v, e}) != 1 && u != v) return false;
  }
  return true;
}
}  // namespace

TEST_CASE("the CSR stores both directions of each pair and a self loop once") {
  const auto g = test::loop_isolated();
  CHECK(g.offsets == std::vector<std::uint64_t>{0, 2, 4, 5, 5});
  CHECK(g.num_edges() == 3);
  CHECK(csr_is_symmetric(g));
  CHECK(csr_is_symmetric(test::triangle_pendant()));
}

TEST_CASE("pairs are stored with src <= dst in input order") {
  const auto g = test::make_graph(3, {{2, 1}, {0, 2}});
  CHECK(g.edges[0] == Edge{1, 2});
  CHECK(g.edges[1] == Edge{0, 2});
}

TEST_CASE(
    "duplicate pairs (in either orientation) are merged keeping the first, kept, or rejected") {
  std::vector<Edge> in = {{0, 1}, {1, 2}, {1, 0}, {0, 1}, {2, 3}};
  teddy::BuildOptions o;
  teddy::BuildReport rep;
  auto g = teddy::build_graph(4, in, o, &rep);
  CHECK(rep.duplicates_merged == 2);
  CHECK(g.num_edges() == 3);
  CHECK(g.edges == std::vector<Edge>{{0, 1}, {1, 2}, {2, 3}});
  CHECK(csr_is_symmetric(g));
  o.duplicates = teddy::DuplicatePolicy::kKeep;
  CHECK(teddy::build_graph(4, in, o).num_edges() == 5);
  o.duplicates = teddy::DuplicatePolicy::kError;
  CHECK_THROWS_WITH_AS(teddy::build_graph(4, in, o), doctest::Contains("more than once"),
                       common::UsageError);
}

TEST_CASE("self loops are kept, dropped or rejected") {
  std::vector<Edge> in = {{0, 0}, {0, 1}};
  teddy::BuildOptions o;
  CHECK(teddy::build_graph(2, in, o).num_self_loops == 1);
  o.self_loops = teddy::SelfLoopPolicy::kDrop;
  teddy::BuildReport rep;
  CHECK(teddy::build_graph(2, in, o, &rep).num_edges() == 1);
  CHECK(rep.self_loops_dropped == 1);
  o.self_loops = teddy::SelfLoopPolicy::kError;
  CHECK_THROWS_AS(teddy::build_graph(2, in, o), common::UsageError);
}

TEST_CASE("a node id beyond the node count is a usage error") {
  CHECK_THROWS_WITH_AS(test::make_graph(3, {{0, 3}}), doctest::Contains("node count 3"),
                       common::UsageError);
}

TEST_CASE("filtering keeps node data, renumbers edges in order and stays symmetric") {
  auto g = test::triangle_pendant();
  g.labels = {0, 1, 0, 1};
  g.feature_dim = 1;
  g.features = {1, 2, 3, 4};
  g.splits["public"].train = {0};
  const auto f = teddy::filter_edges(g, {1, 0, 0, 1});
  CHECK(f.edges == std::vector<Edge>{{0, 1}, {2, 3}});
  CHECK(f.labels == g.labels);
  CHECK(f.features == g.features);
  CHECK(f.splits.at("public").train == std::vector<std::uint32_t>{0});
  CHECK(csr_is_symmetric(f));
}

TEST_CASE("statistics of a graph with an isolated node and a self loop") {
  const auto s = teddy::compute_graph_stats(test::loop_isolated());
  CHECK(s.num_nodes == 4);
  CHECK(s.num_edges == 3);
  CHECK(s.num_self_loops == 1);
  CHECK(s.connected_components == 2);
  CHECK(s.largest_component == 3);
  CHECK(s.isolated_nodes == 1);
  CHECK(s.degree_min == 0);
  CHECK(s.degree_max == 2);
  CHECK(s.degree_mean == doctest::Approx(5.0 / 4));
}

TEST_CASE(
    "csbm is deterministic, exact in size, homophilous, with features, labels and a public split") {
  teddy::CsbmOptions o;
  o.feature_dim = 16;
  o.seed = 11;
  const auto a = teddy::generate_csbm(o);
  const auto b = teddy::generate_csbm(o);
  o.seed = 12;
  const auto c = teddy::generate_csbm(o);
  CHECK(a.edges == b.edges);
  CHECK(a.features == b.features);
  CHECK(a.labels == b.labels);
  CHECK(a.edges != c.edges);
  CHECK(a.num_nodes == 2708);
  CHECK(a.num_edges() == 5278);
  CHECK(a.num_self_loops == 0);
  std::uint64_t same = 0;
  for (const Edge& e : a.edges) same += a.labels[e.src] == a.labels[e.dst];
  CHECK(static_cast<double>(same) / a.num_edges() == doctest::Approx(0.81).epsilon(0.05));
  const auto& split = a.splits.at("public");
  CHECK(split.train.size() == 140);
  CHECK(split.valid.size() == 500);
  CHECK(split.test.size() == 1000);
  CHECK(a.features.size() == 2708u * 16u);
  CHECK(csr_is_symmetric(a));
}

TEST_CASE("csbm word features are 0/1 with exactly `words` per row and carry the class") {
  teddy::CsbmOptions o;
  o.features = teddy::CsbmFeatures::kWords;
  o.signal = 0.2;
  o.seed = 5;
  const auto g = teddy::generate_csbm(o);
  REQUIRE(g.feature_dim == 1433);
  std::uint64_t nonzero = 0;
  bool binary = true, exact = true;
  // Class centroids of the rows; a nearest-centroid (dot product) guess must beat chance (1/7)
  // by far: a class topic is 102 of the 1433 words but gets 1/6 of the draws (signal 0.2).
  std::vector<double> centroid(7 * 1433, 0.0);
  for (std::uint32_t v = 0; v < g.num_nodes; ++v) {
    std::uint32_t row = 0;
    for (std::uint32_t j = 0; j < 1433; ++j) {
      const float x = g.features[std::size_t{v} * 1433 + j];
      binary &= x == 0.0f || x == 1.0f;
      row += x != 0.0f;
      centroid[static_cast<std::size_t>(g.labels[v]) * 1433 + j] += x;
    }
    exact &= row == 18;
    nonzero += row;
  }
  CHECK(binary);
  CHECK(exact);
  CHECK(static_cast<double>(nonzero) / (2708.0 * 1433.0) == doctest::Approx(0.0126).epsilon(0.01));
  std::uint32_t right = 0;
  for (std::uint32_t v = 0; v < g.num_nodes; ++v) {
    int best = 0;
    double best_dot = -1;
    for (int c = 0; c < 7; ++c) {
      double dot = 0;
      for (std::uint32_t j = 0; j < 1433; ++j)
        dot += g.features[std::size_t{v} * 1433 + j] * centroid[std::size_t(c) * 1433 + j];
      if (dot > best_dot) best_dot = dot, best = c;
    }
    right += best == g.labels[v];
  }
  INFO("nearest-centroid accuracy " << right / 2708.0);
  CHECK(right / 2708.0 > 0.5);
}

TEST_CASE(
    "powerlaw gives exactly the requested distinct edges, deterministically, with heavy-tailed "
    "degrees") {
  teddy::PowerLawOptions o;
  o.edges = 100000;
  o.seed = 4;
  const auto a = teddy::generate_power_law(o);
  const auto b = teddy::generate_power_law(o);
  CHECK(a.num_edges() == 100000);
  CHECK(a.edges == b.edges);
  CHECK(a.num_self_loops == 0);
  teddy::BuildOptions strict;
  strict.duplicates = teddy::DuplicatePolicy::kError;
  CHECK_NOTHROW(teddy::build_graph(a.num_nodes, a.edges, strict));
  const auto s = teddy::compute_graph_stats(a);
  CHECK(s.degree_max > 20 * s.degree_mean);  // hubs
}

TEST_CASE("statistics through a keep mask equal those of the filtered graph") {
  teddy::PowerLawOptions o;
  o.edges = 5000;
  o.seed = 9;
  const auto g = teddy::generate_power_law(o);
  std::vector<std::uint8_t> keep(g.num_edges());
  for (std::size_t e = 0; e < keep.size(); ++e) keep[e] = (e * 7919) % 3 != 0;
  const auto masked = teddy::compute_graph_stats(g, &keep);
  const auto built = teddy::compute_graph_stats(teddy::filter_edges(g, keep));
  CHECK(teddy::to_json(masked) == teddy::to_json(built));
}

TEST_CASE("a split with an empty part, a node twice or a node in two parts is refused") {
  const teddy::NodeSplit good{{0, 1}, {2}, {3, 4}};
  CHECK_NOTHROW(teddy::check_node_split(good, 6, "public"));
  struct Case {
    teddy::NodeSplit split;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{{}, {2}, {3}}, "split 'public' has an empty train part"},
      {{{0}, {}, {3}}, "has an empty valid part"},
      {{{0}, {2}, {}}, "has an empty test part"},
      {{{}, {}, {}}, "has an empty train part"},
      {{{0, 1, 1}, {2}, {3}}, "lists node 1 twice in train"},
      {{{0, 1}, {2}, {3, 0}}, "puts node 0 in both train and test"},
      {{{0, 1}, {2, 5}, {5}}, "puts node 5 in both valid and test"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.expect);
    CHECK_THROWS_WITH_AS(teddy::check_node_split(c.split, 6, "public"),
                         doctest::Contains(c.expect.c_str()), common::UsageError);
  }
}

TEST_CASE("a degree-corrected csbm has power-law degrees, the exact edge count and its homophily") {
  teddy::CsbmOptions o;
  o.nodes = 20000;
  o.edges = 200000;
  o.classes = 5;
  o.feature_dim = 0;
  const teddy::Graph flat = teddy::generate_csbm(o);
  o.degree_exponent = 2.5;
  const teddy::Graph skewed = teddy::generate_csbm(o);
  CHECK(skewed.num_edges() == o.edges);
  auto max_degree = [](const teddy::Graph& g) {
    std::uint64_t best = 0;
    for (std::uint32_t v = 0; v < g.num_nodes; ++v) best = std::max(best, g.degree(v));
    return best;
  };
  const double mean = 2.0 * static_cast<double>(o.edges) / o.nodes;  // 20
  CHECK(static_cast<double>(max_degree(flat)) < 3 * mean);           // Poisson: max ≈ 40
  CHECK(static_cast<double>(max_degree(skewed)) > 10 * mean);        // power law: hubs
  CHECK(static_cast<double>(max_degree(skewed)) <= 1.5 * std::sqrt(2.0 * o.edges));  // the cap
  std::uint64_t inside = 0;
  for (const teddy::Edge& e : skewed.edges) inside += skewed.labels[e.src] == skewed.labels[e.dst];
  CHECK(static_cast<double>(inside) / o.edges == doctest::Approx(0.81).epsilon(0.02));
  o.degree_exponent = 1.5;
  CHECK_THROWS_AS(teddy::generate_csbm(o), common::UsageError);
}

TEST_CASE(
    "a streamed powerlaw graph has the exact edge count, no self loops, and its seed's bytes") {
  test::ScratchDir root("stream-gen");
  teddy::PowerLawOptions o;
  o.edges = 300000;
  o.seed = 3;
  teddy::stream_power_law(o, root / "a", 1, false);
  teddy::stream_power_law(o, root / "b", 1, false);
  o.seed = 4;
  teddy::stream_power_law(o, root / "c", 1, false);
  teddy::LoadOptions keep;
  keep.build.duplicates = teddy::DuplicatePolicy::kKeep;
  const teddy::Graph g = teddy::load_graph(root / "a", keep);
  CHECK(g.num_edges() == o.edges);
  CHECK(g.num_nodes == 65536);  // edges / 8, rounded up to a power of 2
  CHECK(g.num_self_loops == 0);
  const teddy::GraphStats s = teddy::compute_graph_stats(g);
  CHECK(static_cast<double>(s.degree_max) > 20 * s.degree_mean);  // R-MAT's hubs
  CHECK(common::read_file(root / "a/raw/edge.csv.gz") ==
        common::read_file(root / "b/raw/edge.csv.gz"));
  CHECK(common::read_file(root / "a/raw/edge.csv.gz") !=
        common::read_file(root / "c/raw/edge.csv.gz"));
  CHECK_THROWS_AS(teddy::stream_power_law(o, root / "a", 1, false), common::UsageError);
}
