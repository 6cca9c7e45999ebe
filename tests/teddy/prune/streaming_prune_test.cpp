// The out-of-core prune (teddy/prune/streaming_prune.h) against the in-memory one — the loader,
// edge_scorer.h and edge_selection.h — on graphs built to stress it: a ring plus chords whose
// degree scores tie in large groups (the tie quota at the threshold), self loops, isolated nodes,
// an edge list with comments; every level's kept edges equal, line for line, for both scorers.
#include "teddy/prune/streaming_prune.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "teddy/graph/graph_io.h"
#include "teddy/graph/gzip_file.h"
#include "teddy/prune/edge_scorer.h"
#include "teddy/prune/edge_selection.h"
#include "teddy/test_graphs.h"

using namespace sparsetrain;
namespace fs = std::filesystem;

namespace {

// The kept edges of `graph` at every level, in memory: "min,max" lines in edge-id order.
std::vector<std::string> in_memory(const teddy::Graph& g, const std::string& scorer,
                                   const std::vector<double>& levels) {
  const auto scores = teddy::make_edge_scorer(scorer, 0)->score(g);
  const teddy::EdgeLevels sel = teddy::select_pruned_edges(scores, levels);
  std::vector<std::string> out;
  for (std::size_t l = 0; l < levels.size(); ++l) {
    const auto keep = sel.keep_mask(l);
    std::string text;
    for (std::size_t e = 0; e < g.num_edges(); ++e) {
      if (!keep[e]) continue;
      const teddy::Edge x = g.edges[e];
      text += std::to_string(std::min(x.src, x.dst)) + "," +
              std::to_string(std::max(x.src, x.dst)) + "\n";
    }
    out.push_back(text);
  }
  return out;
}

std::string edges_of(const fs::path& dir) {
  return std::string(teddy::read_text_file((dir / "raw" / "edge.csv.gz").string()).view());
}

// A ring of n nodes, chords v -> v + n/2 on even v, self loops on multiples of 7, nodes n..n+2
// isolated: degrees 2, 3 and 4 only, so scores tie in large groups.
std::string ring_edge_list(std::uint32_t n) {
  std::string text = "# a ring with chords\n";
  for (std::uint32_t v = 0; v < n; ++v) {
    text += std::to_string(v) + " " + std::to_string((v + 1) % n) + "\n";
    if (v % 2 == 0 && v < n / 2)
      text += std::to_string(v) + "\t" + std::to_string(v + n / 2) + "\n";
    if (v % 7 == 0) text += std::to_string(v) + " " + std::to_string(v) + "\n";
    if (v == n / 3) text += "\n% a comment\n";
  }
  text += std::to_string(n + 2) + " " + std::to_string(n + 2) + "\n";  // the last id: a loop
  return text;
}

}  // namespace

TEST_CASE("the out-of-core prune keeps the in-memory prune's edges at every level, ties and all") {
  test::ScratchDir root("stream-prune");
  const std::string list = root / "ring.txt";
  std::ofstream(list) << ring_edge_list(1000);
  teddy::LoadOptions keep_all;
  keep_all.build.duplicates = teddy::DuplicatePolicy::kKeep;
  const teddy::Graph g = teddy::load_graph_any(list, keep_all);
  REQUIRE(g.num_self_loops > 100);
  const std::vector<double> levels = {0.05, 0.3, 0.5, 0.77, 0.95};
  for (const std::string scorer : {"teddy", "degree"}) {
    CAPTURE(scorer);
    const auto want = in_memory(g, scorer, levels);
    teddy::StreamingPruneOptions o;
    o.scorer = scorer;
    o.sparsities = levels;
    for (std::size_t l = 0; l < levels.size(); ++l)
      o.out_dirs.push_back(root / (scorer + "-" + std::to_string(l)));
    const teddy::StreamingPruneResult r = teddy::prune_streaming(list, o);
    CHECK(r.num_nodes == g.num_nodes);
    CHECK(r.num_edges == g.num_edges());
    CHECK(r.self_loops == g.num_self_loops);
    CHECK(r.passes == (scorer == "teddy" ? 5 : 4));
    for (std::size_t l = 0; l < levels.size(); ++l) {
      CAPTURE(l);
      CHECK(edges_of(o.out_dirs[l]) == want[l]);
      CHECK(r.pruned[l] ==
            teddy::pruned_edge_count(levels[l], g.num_edges(), g.num_edges() - g.num_self_loops));
    }
  }
}

TEST_CASE(
    "an OGB directory prunes out of core with its node data copied, and bad input is "
    "refused before anything is written") {
  test::ScratchDir root("stream-dir");
  auto g = test::triangle_pendant();
  g.labels = {0, 1, 0, 1};
  g.splits["public"] = teddy::NodeSplit{{0}, {1}, {2, 3}};
  teddy::save_graph(g, root / "g", {});
  teddy::StreamingPruneOptions o;
  o.sparsities = {0.5};
  o.out_dirs = {root / "out"};
  teddy::prune_streaming(root / "g", o);
  const teddy::Graph pruned = teddy::load_graph(root / "out", {});
  CHECK(pruned.num_edges() == 2);
  CHECK(pruned.labels == g.labels);
  CHECK(pruned.splits.at("public").test == g.splits.at("public").test);
  // an existing output, an unsupported scorer, a malformed edge line
  CHECK_THROWS_WITH_AS(teddy::prune_streaming(root / "g", o), doctest::Contains("already exists"),
                       common::UsageError);
  o.out_dirs = {root / "out2"};
  o.scorer = "random";
  CHECK_THROWS_WITH_AS(teddy::prune_streaming(root / "g", o), doctest::Contains("teddy or degree"),
                       common::UsageError);
  o.scorer = "teddy";
  std::ofstream(root / "bad.txt") << "0 1\n1 x\n";
  CHECK_THROWS_WITH_AS(teddy::prune_streaming(root / "bad.txt", o), doctest::Contains("bad.txt:2"),
                       common::UsageError);
  CHECK_FALSE(fs::exists(root / "out2"));
}
