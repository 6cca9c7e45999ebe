// Selection of the k lowest undirected pairs: exact counts, the (score, edge id) tie-break,
// nested levels, self loops kept, and agreement with a full sort on a random graph.
#include "teddy/prune/edge_selection.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/error.h"
#include "teddy/graph/graph_generator.h"
#include "teddy/graph/graph_stats.h"
#include "teddy/prune/edge_scorer.h"
#include "teddy/test_graphs.h"

using namespace sparsetrain;

namespace {
std::vector<std::uint32_t> pruned_ids(const teddy::EdgeLevels& lv, std::size_t level) {
  const auto keep = lv.keep_mask(level);
  std::vector<std::uint32_t> ids;
  for (std::uint32_t e = 0; e < keep.size(); ++e) {
    if (!keep[e]) ids.push_back(e);
  }
  return ids;
}
teddy::EdgeScores teddy_scores(const teddy::Graph& g) {
  return teddy::make_edge_scorer("teddy", 0)->score(g);
}
}  // namespace

TEST_CASE("on a path the middle edge goes first, then the tie e0 = e2 is broken by the lower id") {
  const auto lv = teddy::select_pruned_edges(teddy_scores(test::path4()), {1.0 / 3, 2.0 / 3, 1.0});
  CHECK(lv.counts == std::vector<std::uint64_t>{1, 2, 3});
  CHECK(pruned_ids(lv, 0) == std::vector<std::uint32_t>{1});
  CHECK(pruned_ids(lv, 1) == std::vector<std::uint32_t>{0, 1});
  CHECK(pruned_ids(lv, 2) == std::vector<std::uint32_t>{0, 1, 2});
  CHECK(lv.level == std::vector<std::uint8_t>{2, 1, 3});
}

TEST_CASE("a star's tied spokes are pruned in edge-id order") {
  const auto lv = teddy::select_pruned_edges(teddy_scores(test::star5()), {0.5});
  CHECK(pruned_ids(lv, 0) == std::vector<std::uint32_t>{0, 1});
}

TEST_CASE("triangle with pendant: the two triangle edges at the degree-3 node go first") {
  const auto lv =
      teddy::select_pruned_edges(teddy_scores(test::triangle_pendant()), {0.25, 0.5, 0.75});
  CHECK(pruned_ids(lv, 0) == std::vector<std::uint32_t>{1});
  CHECK(pruned_ids(lv, 1) == std::vector<std::uint32_t>{1, 2});
  CHECK(pruned_ids(lv, 2) == std::vector<std::uint32_t>{0, 1, 2});  // the pendant edge survives
}

TEST_CASE("k = floor(s * m) counts self loops in m but never prunes them") {
  // m = 3 (one loop): s = 0.5 -> floor(1.5) = 1; s = 1 -> 3, capped at the 2 prunable edges
  const auto lv = teddy::select_pruned_edges(teddy_scores(test::loop_isolated()), {0.5, 1.0});
  CHECK(lv.counts == std::vector<std::uint64_t>{1, 2});
  CHECK(pruned_ids(lv, 0) == std::vector<std::uint32_t>{1});
  CHECK(pruned_ids(lv, 1) == std::vector<std::uint32_t>{1, 2});
  CHECK(lv.level[0] == 0);
}

TEST_CASE("sparsity 0 prunes nothing; bad level lists are usage errors") {
  const auto lv = teddy::select_pruned_edges(teddy_scores(test::path4()), {0.0});
  CHECK(lv.counts[0] == 0);
  CHECK(pruned_ids(lv, 0).empty());
  CHECK_THROWS_AS(teddy::select_pruned_edges(std::vector<float>{1.0f}, {0.5, 0.2}),
                  common::UsageError);
  CHECK_THROWS_AS(teddy::select_pruned_edges(std::vector<float>{1.0f}, {1.5}), common::UsageError);
  CHECK_THROWS_AS(teddy::select_pruned_edges(std::vector<float>{1.0f}, {}), common::UsageError);
}

TEST_CASE(
    "on a random graph every paper level prunes exactly the k smallest (score, id) and levels "
    "nest") {
  teddy::PowerLawOptions o;
  o.edges = 200000;
  o.seed = 5;
  const teddy::Graph g = teddy::generate_power_law(o);
  for (const char* name : {"teddy", "degree", "random"}) {
    CAPTURE(name);
    const auto scores = teddy::make_edge_scorer(name, 3)->score(g);
    const auto sparsities = teddy::paper_graph_sparsities();
    const auto lv = teddy::select_pruned_edges(scores, sparsities);
    // Reference: a full sort by (score, id).
    std::vector<std::uint32_t> order(scores.size());
    std::iota(order.begin(), order.end(), 0u);
    std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
      return scores[a] < scores[b] || (scores[a] == scores[b] && a < b);
    });
    std::vector<std::uint8_t> prev_keep(scores.size(), 1);
    for (std::size_t i = 0; i < sparsities.size(); ++i) {
      const auto k = static_cast<std::uint64_t>(std::floor(sparsities[i] * scores.size()));
      CHECK(lv.counts[i] == k);
      std::vector<std::uint32_t> expected(order.begin(),
                                          order.begin() + static_cast<std::ptrdiff_t>(k));
      std::sort(expected.begin(), expected.end());
      CHECK(pruned_ids(lv, i) == expected);
      const auto keep = lv.keep_mask(i);
      bool nested = true;
      for (std::size_t e = 0; e < keep.size(); ++e) nested &= !(keep[e] && !prev_keep[e]);
      CHECK(nested);
      prev_keep = keep;
    }
  }
}

TEST_CASE("selection keys order by float score first, then by edge id") {
  CHECK(teddy::edge_selection_key(-1.0f, 9) < teddy::edge_selection_key(0.0f, 0));
  CHECK(teddy::edge_selection_key(0.5f, 1) < teddy::edge_selection_key(0.5f, 2));
  CHECK(teddy::edge_selection_key(0.5f, 9) < teddy::edge_selection_key(0.75f, 0));
  CHECK(teddy::edge_selection_key(1e30f, 9) < teddy::edge_selection_key(INFINITY, 0));
}

TEST_CASE("pruning the middle of a path splits it into two components") {
  const auto g = test::path4();
  const auto lv =
      teddy::select_pruned_edges(teddy::make_edge_scorer("teddy", 0)->score(g), {1.0 / 3});
  const auto pruned = teddy::filter_edges(g, lv.keep_mask(0));
  const auto s = teddy::compute_graph_stats(pruned);
  CHECK(s.connected_components == 2);
  CHECK(s.isolated_nodes == 0);
  CHECK(pruned.edges == std::vector<test::Edge>{{0, 1}, {2, 3}});
}
