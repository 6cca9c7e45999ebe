// TEDDY scores on small graphs against values worked out by hand from the official formula
//   g[v] = d_v^-2 · Σ_{u∈N(v)} d_u^-1/2,  score(i,j) = g[i]·g[j]
// and the baselines' defining properties.
#include "teddy/prune/edge_scorer.h"

#include <doctest/doctest.h>

#include <cmath>

#include "common/error.h"
#include "teddy/test_graphs.h"

using namespace sparsetrain;
using test::Edge;

namespace {
teddy::EdgeScores teddy_scores(const teddy::Graph& g) {
  return teddy::make_edge_scorer("teddy", 0)->score(g);
}
}  // namespace

TEST_CASE("teddy scores a path: the middle edge between two degree-2 nodes scores lowest") {
  // d = (1,2,2,1); g0 = g3 = 1·2^-1/2; g1 = g2 = (1 + 2^-1/2)/4
  const double g0 = 1 / std::sqrt(2.0), g1 = (1 + 1 / std::sqrt(2.0)) / 4;
  const auto s = teddy_scores(test::path4());
  REQUIRE(s.size() == 3);
  CHECK(s[0] == doctest::Approx(g0 * g1).epsilon(1e-6));  // 0.30178
  CHECK(s[1] == doctest::Approx(g1 * g1).epsilon(1e-6));  // 0.18214
  CHECK(s[2] == doctest::Approx(g0 * g1).epsilon(1e-6));
  CHECK(s[0] == s[2]);  // an exact tie, broken by edge id in selection
}

TEST_CASE("teddy scores a star: every spoke ties at 1/8") {
  // centre d=4: g = 4·1/16 = 1/4; leaf d=1: g = 4^-1/2 = 1/2
  for (float x : teddy_scores(test::star5())) CHECK(x == doctest::Approx(0.125).epsilon(1e-7));
}

TEST_CASE("teddy scores a triangle with a pendant by hand") {
  // d = (2,2,3,1)
  const double r2 = 1 / std::sqrt(2.0), r3 = 1 / std::sqrt(3.0);
  const double g0 = (r2 + r3) / 4, g1 = g0, g2 = (r2 + r2 + 1) / 9, g3 = r3;
  const auto s = teddy_scores(test::triangle_pendant());
  CHECK(s[0] == doctest::Approx(g0 * g1).epsilon(1e-6));  // 0.10311
  CHECK(s[1] == doctest::Approx(g0 * g2).epsilon(1e-6));  // 0.08614
  CHECK(s[2] == doctest::Approx(g1 * g2).epsilon(1e-6));
  CHECK(s[3] == doctest::Approx(g2 * g3).epsilon(1e-6));  // 0.15487
}

TEST_CASE("a self loop counts once in the degree and in the neighbourhood, and scores +inf") {
  // d = (2,2,1,0): the loop is on A's diagonal. g0 = (2^-1/2 + 2^-1/2)/4, g1 = (2^-1/2 + 1)/4,
  // g2 = 2^-1/2, g3 = 0 (isolated).
  const teddy::Graph g = test::loop_isolated();
  CHECK(g.degree(0) == 2);
  CHECK(g.degree(3) == 0);
  CHECK(g.num_self_loops == 1);
  const auto factor = teddy::teddy_node_factors(g);
  const double r2 = 1 / std::sqrt(2.0);
  CHECK(factor[0] == doctest::Approx(2 * r2 / 4));
  CHECK(factor[1] == doctest::Approx((r2 + 1) / 4));
  CHECK(factor[2] == doctest::Approx(r2));
  CHECK(factor[3] == 0.0);
  const auto s = teddy_scores(g);
  CHECK(std::isinf(s[0]));
  CHECK(s[1] == doctest::Approx(factor[0] * factor[1]).epsilon(1e-6));
  CHECK(s[2] == doctest::Approx(factor[1] * factor[2]).epsilon(1e-6));
  for (const char* name : {"degree", "random"}) {
    CAPTURE(name);
    CHECK(std::isinf(teddy::make_edge_scorer(name, 1)->score(g)[0]));
  }
}

TEST_CASE("the degree baseline is 1/(d_i d_j)") {
  const auto s = teddy::make_edge_scorer("degree", 0)->score(test::triangle_pendant());
  CHECK(s[0] == doctest::Approx(1.0 / 4));
  CHECK(s[1] == doctest::Approx(1.0 / 6));
  CHECK(s[3] == doctest::Approx(1.0 / 3));
}

TEST_CASE("random scores lie in [0,1), follow the seed and differ between seeds") {
  std::vector<Edge> edges;
  for (std::uint32_t i = 0; i + 1 < 1000; ++i) edges.push_back({i, i + 1});
  const auto g = test::make_graph(1000, edges);
  const auto a = teddy::make_edge_scorer("random", 7)->score(g);
  const auto b = teddy::make_edge_scorer("random", 7)->score(g);
  const auto c = teddy::make_edge_scorer("random", 8)->score(g);
  CHECK(a == b);
  CHECK(a != c);
  double mean = 0;
  for (float x : a) {
    CHECK(x >= 0.0f);
    CHECK(x < 1.0f);
    mean += x / a.size();
  }
  CHECK(mean == doctest::Approx(0.5).epsilon(0.1));
}

TEST_CASE("an unknown scorer name is a usage error naming the choices") {
  CHECK_THROWS_WITH_AS(teddy::make_edge_scorer("magic", 0), doctest::Contains("magic"),
                       common::UsageError);
}
