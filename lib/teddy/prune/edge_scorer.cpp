// TEDDY, degree-product and random edge scorers; see edge_scorer.h.
#include "teddy/prune/edge_scorer.h"

#include <cmath>
#include <limits>

#include "common/default_init_allocator.h"
#include "common/error.h"
#include "common/huge_page_allocator.h"

namespace sparsetrain::teddy {

namespace {

constexpr float kNeverPrune = std::numeric_limits<float>::infinity();

// Edge loops run in dynamic chunks of 64 Ki edges: on a shared machine a thread that loses its
// core for a while has its remaining chunks taken by the others instead of holding up the join,
// as a static split would. Each score depends on its edge alone, so the schedule never changes
// a result.
constexpr int kEdgeChunk = 1 << 16;

// The node factor arrays are read by random gathers (one per CSR entry, two per edge): on huge
// pages (common/huge_page_allocator.h), and filled by parallel loops without a zero fill first.
using NodeArray =
    std::vector<double, common::DefaultInitAllocator<double, common::HugePageAllocator<double>>>;
// The gathers are also prefetched this many entries ahead: 10-20 % faster at 10^8 edges once the
// TLB no longer limits (bench/results/README.md).
constexpr std::uint64_t kPrefetchDistance = 32;

NodeArray compute_node_factors(const Graph& g) {
  const std::int64_t n = g.num_nodes;
  NodeArray inv_sqrt(static_cast<std::size_t>(n));
#pragma omp parallel for schedule(static)
  for (std::int64_t v = 0; v < n; ++v) {
    const auto d = static_cast<double>(g.degree(static_cast<std::uint32_t>(v)));
    inv_sqrt[static_cast<std::size_t>(v)] = d > 0 ? 1.0 / std::sqrt(d) : 0.0;
  }
  NodeArray factor(static_cast<std::size_t>(n));
  const std::uint64_t entries = g.offsets[static_cast<std::size_t>(n)];
#pragma omp parallel for schedule(dynamic, 4096)
  for (std::int64_t v = 0; v < n; ++v) {
    const std::uint64_t begin = g.offsets[static_cast<std::size_t>(v)];
    const std::uint64_t end = g.offsets[static_cast<std::size_t>(v) + 1];
    double sum = 0;
    for (std::uint64_t i = begin; i < end; ++i) {
      if (i + kPrefetchDistance < entries) {
        __builtin_prefetch(&inv_sqrt[g.neighbors[i + kPrefetchDistance]]);
      }
      sum += inv_sqrt[g.neighbors[i]];
    }
    const auto d = static_cast<double>(end - begin);
    factor[static_cast<std::size_t>(v)] = d > 0 ? sum / (d * d) : 0.0;
  }
  return factor;
}

// scores[e] = pair_score(e, edge) for every edge, +inf for self loops; prefetch(edge) is called
// kPrefetchDistance edges ahead.
template <typename PairScore, typename Prefetch>
EdgeScores score_edges(const Graph& g, PairScore pair_score, Prefetch prefetch) {
  const auto m = static_cast<std::int64_t>(g.num_edges());
  const auto ahead = static_cast<std::int64_t>(kPrefetchDistance);
  EdgeScores s(static_cast<std::size_t>(m));
#pragma omp parallel for schedule(dynamic, kEdgeChunk)
  for (std::int64_t e = 0; e < m; ++e) {
    if (e + ahead < m) prefetch(g.edges[static_cast<std::size_t>(e + ahead)]);
    const Edge edge = g.edges[static_cast<std::size_t>(e)];
    s[static_cast<std::size_t>(e)] = edge.src == edge.dst ? kNeverPrune : pair_score(e, edge);
  }
  return s;
}

class TeddyScorer final : public EdgeScorer {
 public:
  std::string name() const override { return "teddy"; }
  EdgeScores score(const Graph& g) const override {
    const NodeArray factor = compute_node_factors(g);
    return score_edges(
        g,
        [&factor](std::int64_t /*e*/, Edge edge) {
          return static_cast<float>(factor[edge.src] * factor[edge.dst]);
        },
        [&factor](Edge ahead) {
          __builtin_prefetch(&factor[ahead.src]);
          __builtin_prefetch(&factor[ahead.dst]);
        });
  }
};

class DegreeScorer final : public EdgeScorer {
 public:
  std::string name() const override { return "degree"; }
  EdgeScores score(const Graph& g) const override {
    return score_edges(
        g,
        [&g](std::int64_t /*e*/, Edge edge) {
          return static_cast<float>(1.0 / (static_cast<double>(g.degree(edge.src)) *
                                           static_cast<double>(g.degree(edge.dst))));
        },
        [](Edge /*ahead*/) {});
  }
};

// splitmix64: a full-avalanche hash, so hash(seed ^ f(id)) is a fine per-edge random stream.
inline std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class RandomScorer final : public EdgeScorer {
 public:
  explicit RandomScorer(std::uint64_t seed) : seed_(seed) {}
  std::string name() const override { return "random"; }
  EdgeScores score(const Graph& g) const override {
    const std::uint64_t key = mix64(seed_ ^ 0x7465646479ULL);
    return score_edges(
        g,
        [key](std::int64_t e, Edge /*edge*/) {
          // 24 random bits -> exactly representable float in [0, 1)
          const auto bits =
              static_cast<std::uint32_t>(mix64(key + static_cast<std::uint64_t>(e)) >> 40);
          return static_cast<float>(bits) * 0x1p-24f;
        },
        [](Edge /*ahead*/) {});
  }

 private:
  std::uint64_t seed_;
};

}  // namespace

std::vector<double> teddy_node_factors(const Graph& g) {
  const NodeArray factor = compute_node_factors(g);
  return {factor.begin(), factor.end()};
}

std::vector<std::string> edge_scorer_names() { return {"teddy", "degree", "random"}; }

std::unique_ptr<EdgeScorer> make_edge_scorer(const std::string& name, std::uint64_t seed) {
  if (name == "teddy") return std::make_unique<TeddyScorer>();
  if (name == "degree") return std::make_unique<DegreeScorer>();
  if (name == "random") return std::make_unique<RandomScorer>(seed);
  throw common::UsageError("unknown edge scorer '" + name + "'", "choose teddy, degree or random");
}

}  // namespace sparsetrain::teddy
