// `sparsetrain teddy …`: graph lottery tickets — one-shot edge pruning and sparse GNN training.
//   teddy prune   score every undirected edge once (TEDDY's degree statistics, or a baseline) and
//                 prune the lowest-scoring pairs to one graph sparsity or the papers' 20 nested
//                 levels
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli.h"
#include "common/error.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/run/system_info.h"
#include "common/units.h"
#include "graph_read_flags.h"
#include "teddy/graph/graph_io.h"
#include "teddy/graph/graph_stats.h"
#include "teddy/prune/edge_scorer.h"
#include "teddy/prune/edge_selection.h"
#include "teddy/prune/streaming_prune.h"

namespace sparsetrain::cli {

namespace {

namespace teddy = sparsetrain::teddy;

struct PruneOptions {
  std::string graph;
  std::vector<double> sparsities;
  std::string levels;  // "" or "paper"
  std::string scorer = "teddy";
  std::string out_graph;
  bool overwrite = false;
  GraphReadFlags read;
  int gzip_level = 1;
  std::string mem;           // --mem: budget; the prune goes out of core when memory would not fit
  bool out_of_core = false;  // --out-of-core: always stream (teddy/prune/streaming_prune.h)
};

// Bytes the in-memory prune of `graph` would take: the compressed edge file while it is parsed,
// 31 per edge (bench/results/README.md: 29-31 measured) and 16 per node. The edge count is
// num-edge-list.csv.gz's when there is one, else estimated from the file (4 compressed or 12
// plain bytes per edge: short lines, so an overestimate for large ids).
std::uint64_t in_memory_prune_bytes(const std::string& graph) {
  namespace fs = std::filesystem;
  const bool dir = fs::is_directory(graph);
  const std::string edges_path = dir ? (fs::path(graph) / "raw" / "edge.csv.gz").string() : graph;
  std::error_code ec;
  const std::uint64_t file_bytes = fs::file_size(edges_path, ec);
  if (ec) return 0;  // the loader names the missing file
  std::uint64_t nodes = dir ? teddy::read_node_count(graph) : 0;
  std::uint64_t edges = dir ? teddy::read_edge_count(graph) : 0;
  if (edges == 0) {
    std::FILE* f = std::fopen(edges_path.c_str(), "rb");
    unsigned char magic[2] = {0, 0};
    if (f != nullptr) {
      if (std::fread(magic, 1, 2, f) != 2) magic[0] = 0;
      std::fclose(f);
    }
    edges = file_bytes / (magic[0] == 0x1f && magic[1] == 0x8b ? 4 : 12);
  }
  if (nodes == 0) nodes = edges;  // an edge list: at most 2 per edge, usually fewer
  return file_bytes + 31 * edges + 16 * nodes;
}

std::vector<double> requested_levels(const PruneOptions& o) {
  if (o.levels == "paper") {
    if (!o.sparsities.empty()) {
      throw common::UsageError("--levels paper and --graph-sparsity are exclusive",
                               "drop one of them");
    }
    return teddy::paper_graph_sparsities();
  }
  if (o.sparsities.empty()) {
    throw common::UsageError("no target sparsity",
                             "pass --graph-sparsity S (e.g. 0.3) or --levels paper");
  }
  std::vector<double> s = o.sparsities;
  for (double x : s) teddy::pruned_edge_count(x, 0, 0);  // validates the range
  std::sort(s.begin(), s.end());
  s.erase(std::unique(s.begin(), s.end()), s.end());
  return s;
}

std::string level_dir(const std::string& base, std::size_t i, std::size_t count) {
  if (count == 1) return base;
  char name[32];
  std::snprintf(name, sizeof name, "/level-%02zu", i + 1);
  return base + name;
}

// Fails before any work when an output would be refused later; creates the parent of level dirs.
void prepare_output(const PruneOptions& o, std::size_t levels) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string first = level_dir(o.out_graph, 0, levels);
  if (!o.overwrite && fs::exists(first, ec)) {
    throw common::UsageError("output graph directory '" + first + "' already exists",
                             "pass --overwrite to replace it, or choose another --out-graph");
  }
  if (levels > 1 && !fs::is_directory(o.out_graph, ec) &&
      !fs::create_directories(o.out_graph, ec)) {
    throw common::UsageError("cannot create '" + o.out_graph + "': " + ec.message(),
                             "choose a writable --out-graph");
  }
}

// True when --mem is given and the in-memory prune would not fit it (then the streaming one must).
bool out_of_core_needed(const PruneOptions& o) {
  if (o.mem.empty()) return false;
  const std::uint64_t budget = common::parse_bytes(o.mem);
  const std::uint64_t need = in_memory_prune_bytes(o.graph);
  if (need <= budget) return false;
  common::log_info("the in-memory prune needs about ", common::format_bytes(double(need)),
                   ", more than --mem ", common::format_bytes(double(budget)),
                   ": pruning out of core (passes over the edge file)");
  return true;
}

void run_streaming_prune(const PruneOptions& o, const std::vector<double>& levels,
                         CommandContext& ctx) {
  teddy::StreamingPruneOptions so;
  so.scorer = o.scorer;
  so.sparsities = levels;
  so.overwrite = o.overwrite;
  so.gzip_level = o.gzip_level;
  for (std::size_t i = 0; !o.out_graph.empty() && i < levels.size(); ++i)
    so.out_dirs.push_back(level_dir(o.out_graph, i, levels.size()));
  if (o.read.options().symmetrize) {
    throw common::UsageError(
        "--symmetrize needs the in-memory prune (merging a pair's two "
        "directions needs memory per edge)",
        "drop --out-of-core, or raise --mem");
  }
  // O(nodes) must fit the budget: checked once the node count is known (pass 1), and before it
  // for a directory, whose count is on file.
  const std::uint64_t budget = o.mem.empty() ? 0 : common::parse_bytes(o.mem);
  const auto check_budget = [&](std::uint64_t nodes) {
    const std::uint64_t need = teddy::streaming_prune_bytes(nodes, levels.size());
    if (budget > 0 && need > budget) {
      throw common::UsageError(
          "--mem " + common::format_bytes(double(budget)) +
              " is too small even for the out-of-core prune: " + std::to_string(nodes) +
              " nodes need " + common::format_bytes(double(need)),
          "raise --mem to at least " + common::format_bytes(double(need)));
    }
  };
  if (std::filesystem::is_directory(o.graph)) check_budget(teddy::read_node_count(o.graph));
  std::unique_ptr<common::Progress> bar;
  teddy::StreamingPruneResult r;
  {
    auto t = ctx.record.timings().scope("stream");
    r = teddy::prune_streaming(o.graph, so, [&](const std::string& name, int index) {
      if (bar) bar->finish();
      bar = std::make_unique<common::Progress>("pass " + std::to_string(index) + " " + name, 0,
                                               "passes");
      common::check_interrupt();
    });
    if (bar) bar->finish();
  }
  check_budget(r.num_nodes);
  nlohmann::json& m = ctx.record.metrics();
  m["mode"] = "out-of-core";
  m["scorer"] = o.scorer;
  m["edges_before"] = r.num_edges;
  m["nodes"] = r.num_nodes;
  m["self_loops"] = r.self_loops;
  m["passes"] = r.passes;
  m["tie_break"] = "score as float32 ascending, then edge id ascending; self loops never pruned";
  nlohmann::json out_levels = nlohmann::json::array();
  for (std::size_t i = 0; i < levels.size(); ++i) {
    const double achieved =
        r.num_edges ? static_cast<double>(r.pruned[i]) / static_cast<double>(r.num_edges) : 0.0;
    nlohmann::json level = {{"level", i + 1},
                            {"graph_sparsity", levels[i]},
                            {"edges_pruned", r.pruned[i]},
                            {"edges_after", r.num_edges - r.pruned[i]},
                            {"achieved_sparsity", achieved},
                            {"threshold_score", r.threshold[i]}};
    if (!o.out_graph.empty() && levels.size() > 1)
      level["dir"] = level_dir("", i, levels.size()).substr(1);
    std::printf("level %2zu  sparsity %.4f  edges %llu -> %llu (achieved %.4f)\n", i + 1, levels[i],
                static_cast<unsigned long long>(r.num_edges),
                static_cast<unsigned long long>(r.num_edges - r.pruned[i]), achieved);
    out_levels.push_back(std::move(level));
  }
  if (levels.size() == 1) {
    m["graph_sparsity"] = levels[0];
    m["edges_after"] = out_levels[0]["edges_after"];
    m["achieved_sparsity"] = out_levels[0]["achieved_sparsity"];
  }
  m["levels"] = std::move(out_levels);
  m["bytes_written"] = r.bytes_written;
  ctx.record.run_extra()["bytes_read"] = r.bytes_read;
  ctx.record.run_extra()["memory_planned_bytes"] = r.memory_bytes;
  ctx.record.run_extra()["peak_rss_bytes"] = common::peak_rss_bytes();
}

void run_prune(const PruneOptions& o, CommandContext& ctx) {
  const std::vector<double> levels = requested_levels(o);
  const auto scorer = teddy::make_edge_scorer(o.scorer, ctx.global.seed);
  if (ctx.global.dry_run) {
    std::cout << "would score '" << o.graph << "' with " << scorer->name() << " and prune to "
              << levels.size() << " level(s) from " << levels.front() << " to " << levels.back()
              << (o.out_graph.empty() ? "" : ", writing '" + o.out_graph + "'") << "\n";
    return;
  }
  if (!o.out_graph.empty()) prepare_output(o, levels.size());
  if (o.out_of_core || out_of_core_needed(o)) {
    run_streaming_prune(o, levels, ctx);
    return;
  }
  const std::uint64_t rss_before = common::peak_rss_bytes();
  teddy::LoadReport load;
  teddy::Graph g = [&] {
    auto t = ctx.record.timings().scope("load");
    return teddy::load_graph_any(o.graph, o.read.options(), &load);
  }();
  ctx.record.timings().add("load.parse", load.parse_seconds);
  ctx.record.timings().add("load.build_csr", load.build_seconds);
  teddy::GraphStats before;
  {
    auto t = ctx.record.timings().scope("stats");
    before = teddy::compute_graph_stats(g);
  }
  teddy::EdgeScores scores;
  {
    auto t = ctx.record.timings().scope("score");
    scores = scorer->score(g);
  }
  teddy::EdgeLevels selection;
  {
    auto t = ctx.record.timings().scope("select");
    selection = teddy::select_pruned_edges(scores, levels);
  }
  teddy::EdgeScores().swap(scores);

  nlohmann::json& m = ctx.record.metrics();
  m["scorer"] = scorer->name();
  m["edges_before"] = g.num_edges();
  m["before"] = teddy::to_json(before);
  m["tie_break"] = "score as float32 ascending, then edge id ascending; self loops never pruned";
  nlohmann::json out_levels = nlohmann::json::array();
  std::uint64_t bytes_written = 0;
  for (std::size_t i = 0; i < levels.size(); ++i) {
    common::check_interrupt();
    // The pruned graph is never materialised: stats and the writer read `g` through the mask.
    const std::vector<std::uint8_t> keep = selection.keep_mask(i);
    teddy::GraphStats after;
    {
      auto t = ctx.record.timings().scope("stats");
      after = teddy::compute_graph_stats(g, &keep);
    }
    const double achieved = g.num_edges() ? static_cast<double>(selection.counts[i]) /
                                                static_cast<double>(g.num_edges())
                                          : 0.0;
    nlohmann::json level = {{"level", i + 1},
                            {"graph_sparsity", levels[i]},
                            {"edges_pruned", selection.counts[i]},
                            {"edges_after", after.num_edges},
                            {"achieved_sparsity", achieved},
                            {"after", teddy::to_json(after)}};
    if (!o.out_graph.empty()) {
      auto t = ctx.record.timings().scope("write");
      teddy::SaveOptions so;
      so.gzip_level = o.gzip_level;
      so.overwrite = o.overwrite;
      teddy::SaveReport save;
      teddy::save_graph(g, level_dir(o.out_graph, i, levels.size()), so, &save, &keep);
      bytes_written += save.bytes_written;
      if (levels.size() > 1) level["dir"] = level_dir("", i, levels.size()).substr(1);
    }
    std::printf(
        "level %2zu  sparsity %.4f  edges %llu -> %llu (achieved %.4f)  components %llu -> %llu  "
        "isolated %llu -> %llu\n",
        i + 1, levels[i], static_cast<unsigned long long>(g.num_edges()),
        static_cast<unsigned long long>(after.num_edges), achieved,
        static_cast<unsigned long long>(before.connected_components),
        static_cast<unsigned long long>(after.connected_components),
        static_cast<unsigned long long>(before.isolated_nodes),
        static_cast<unsigned long long>(after.isolated_nodes));
    out_levels.push_back(std::move(level));
  }
  if (levels.size() == 1) {
    m["graph_sparsity"] = levels[0];
    m["edges_after"] = out_levels[0]["edges_after"];
    m["achieved_sparsity"] = out_levels[0]["achieved_sparsity"];
    m["after"] = out_levels[0]["after"];
  }
  m["levels"] = std::move(out_levels);
  m["bytes_written"] = bytes_written;
  const std::uint64_t peak = common::peak_rss_bytes();
  ctx.record.run_extra()["bytes_read"] = load.bytes_read;
  ctx.record.run_extra()["peak_rss_growth_bytes"] = peak - rss_before;
  ctx.record.run_extra()["bytes_per_edge"] =
      g.num_edges() ? static_cast<double>(peak - rss_before) / static_cast<double>(g.num_edges())
                    : 0.0;
}

}  // namespace

void add_teddy_commands(CLI::App& app) {
  CLI::App* teddy = app.add_subcommand(
      "teddy", "Graph lottery tickets: TEDDY edge pruning and sparse GNN training");
  teddy->configurable();

  auto o = std::make_shared<PruneOptions>();
  CLI::App* p = teddy->add_subcommand(
      "prune", "One-shot edge sparsification: score each undirected edge once, prune the lowest");
  p->add_option("--graph", o->graph, "OGB raw graph directory, or an edge-list file")->required();
  p->add_option("--graph-sparsity", o->sparsities,
                "Fraction of undirected edges to prune (repeatable: nested levels from one score)");
  p->add_option("--levels", o->levels, "paper: the 20 nested levels 1 - 0.95^k, k = 1..20")
      ->check(CLI::IsMember({"paper"}));
  p->add_option(
       "--scorer", o->scorer,
       "teddy: official TEDDY degree statistic; degree: 1/(d_i d_j); random: seeded uniform")
      ->check(CLI::IsMember(teddy::edge_scorer_names()));
  p->add_option(
      "--out-graph", o->out_graph,
      "Write the pruned graph here (OGB raw layout, features/labels/splits carried over);\n"
      "with several levels, one subdirectory level-KK per level");
  p->add_flag("--overwrite", o->overwrite, "Replace existing output graph directories");
  o->read.add_to(p);
  add_gzip_level_option(p, o->gzip_level);
  p->add_option("--mem", o->mem,
                "Memory budget (e.g. 8GiB): when the in-memory prune would need more, prune out "
                "of core (passes over the edge file, O(nodes) memory, the same kept edges)");
  p->add_flag("--out-of-core", o->out_of_core,
              "Always prune out of core (teddy and degree scorers; no graph statistics)");
  p->footer(
      "Selection: k = floor(S * m) undirected pairs (m counts self loops, as the official code "
      "counts\n"
      "nnz) with the lowest scores are pruned, whole pairs at a time. Ties: score compared as "
      "float32,\n"
      "then the lower edge id (input line order) is pruned first. Self loops are never pruned. "
      "Levels\n"
      "are prefixes of one order, so their masks are nested.\n\n"
      "Examples:\n"
      "  sparsetrain teddy prune --graph ../shared/data/cora --graph-sparsity 0.3 --out-graph "
      "cora-s30 --out run.json\n"
      "  sparsetrain teddy prune --graph ../shared/data/citeseer --levels paper --out-graph "
      "citeseer-levels");
  set_command_runner(p, [o](CommandContext& ctx) { run_prune(*o, ctx); });
  add_teddy_run_command(*teddy);
}

}  // namespace sparsetrain::cli
