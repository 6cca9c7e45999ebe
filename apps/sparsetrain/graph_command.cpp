// `sparsetrain graph …`: inspect and generate graphs (lib/teddy's graph layer).
//   graph stats PATH            counts, components, isolated nodes, degrees of an OGB raw directory
//                               or an edge-list file
//   graph generate csbm|powerlaw --out-graph DIR   seeded synthetic graphs in the OGB raw layout
#include <iostream>

#include "cli.h"
#include "common/error.h"
#include "common/log.h"
#include "common/run/system_info.h"
#include "common/units.h"
#include "graph_read_flags.h"
#include "teddy/graph/graph_generator.h"
#include "teddy/graph/graph_io.h"
#include "teddy/graph/graph_stats.h"

namespace sparsetrain::cli {

namespace {

namespace teddy = sparsetrain::teddy;

void print_stats(const std::string& title, const teddy::GraphStats& s) {
  std::cout << title << "\n"
            << "  nodes                 " << s.num_nodes << "\n"
            << "  edges (undirected)    " << s.num_edges << " (" << s.num_self_loops
            << " self loops)\n"
            << "  connected components  " << s.connected_components << " (largest "
            << s.largest_component << " nodes)\n"
            << "  isolated nodes        " << s.isolated_nodes << "\n"
            << "  degree min/median/mean/p99/max  " << s.degree_min << " / " << s.degree_median
            << " / " << s.degree_mean << " / " << s.degree_p99 << " / " << s.degree_max << "\n"
            << "  features, classes     " << s.feature_dim << ", " << s.num_classes << "\n";
}

struct StatsOptions {
  std::string path;
  GraphReadFlags read;
};

void run_stats(const StatsOptions& o, CommandContext& ctx) {
  if (ctx.global.dry_run) {
    std::cout << "would read '" << o.path << "' and print its statistics\n";
    return;
  }
  const std::uint64_t rss_before = common::peak_rss_bytes();
  teddy::LoadReport load;
  teddy::Graph g = [&] {
    auto t = ctx.record.timings().scope("load");
    return teddy::load_graph_any(o.path, o.read.options(), &load);
  }();
  teddy::GraphStats stats;
  {
    auto t = ctx.record.timings().scope("stats");
    stats = teddy::compute_graph_stats(g);
  }
  nlohmann::json& m = ctx.record.metrics();
  m["graph"] = teddy::to_json(stats);
  m["input"] = {{"duplicates_merged", load.build.duplicates_merged},
                {"self_loops_dropped", load.build.self_loops_dropped},
                {"has_features", g.has_features()},
                {"splits", nlohmann::json::array()}};
  for (const auto& [name, split] : g.splits) {
    m["input"]["splits"].push_back({{"name", name},
                                    {"train", split.train.size()},
                                    {"valid", split.valid.size()},
                                    {"test", split.test.size()}});
  }
  ctx.record.run_extra()["bytes_read"] = load.bytes_read;
  ctx.record.run_extra()["bytes_per_edge"] =
      g.num_edges() ? static_cast<double>(common::peak_rss_bytes() - rss_before) /
                          static_cast<double>(g.num_edges())
                    : 0.0;
  print_stats(o.path, stats);
  if (!g.has_features()) std::cout << "  (no node features)\n";
}

struct GenerateOptions {
  std::string kind;
  std::string out_graph;
  bool overwrite = false;
  std::uint32_t nodes = 0;
  std::uint64_t edges = 0;
  std::uint32_t classes = 7;
  std::uint32_t feature_dim = 1433;
  double homophily = 0.81;
  double degree_exponent = 0;
  double signal = 1.0;
  std::string features = "gaussian";
  std::uint32_t words = 18;
  int gzip_level = 1;
  bool stream = false;
};

void run_generate(const GenerateOptions& o, CommandContext& ctx) {
  const std::uint64_t rss_before = common::peak_rss_bytes();
  if (ctx.global.dry_run) {
    std::cout << "would generate a " << o.kind << " graph (seed " << ctx.global.seed << ") into '"
              << o.out_graph << "'\n";
    return;
  }
  if (o.stream) {
    if (o.kind != "powerlaw") {
      throw common::UsageError("--stream writes powerlaw graphs only", "drop --stream for csbm");
    }
    teddy::PowerLawOptions p;
    p.nodes = o.nodes;
    if (o.edges) p.edges = o.edges;
    p.seed = ctx.global.seed;
    auto t = ctx.record.timings().scope("generate");
    const std::uint64_t bytes = teddy::stream_power_law(p, o.out_graph, o.gzip_level, o.overwrite);
    ctx.record.metrics()["bytes_written"] = bytes;
    ctx.record.metrics()["edges"] = p.edges;
    common::log_info(common::cat("streamed ", p.edges, " edges (repeats kept) to '", o.out_graph,
                                 "', ", common::format_bytes(double(bytes))));
    return;
  }
  teddy::Graph g = [&] {
    auto t = ctx.record.timings().scope("generate");
    if (o.kind == "csbm") {
      teddy::CsbmOptions c;
      if (o.nodes) c.nodes = o.nodes;
      if (o.edges) c.edges = o.edges;
      c.classes = o.classes;
      c.feature_dim = o.feature_dim;
      c.homophily = o.homophily;
      c.degree_exponent = o.degree_exponent;
      c.signal = o.signal;
      c.features =
          o.features == "words" ? teddy::CsbmFeatures::kWords : teddy::CsbmFeatures::kGaussian;
      c.words = o.words;
      c.seed = ctx.global.seed;
      return teddy::generate_csbm(c);
    }
    teddy::PowerLawOptions p;
    p.nodes = o.nodes;
    if (o.edges) p.edges = o.edges;
    p.seed = ctx.global.seed;
    return teddy::generate_power_law(p);
  }();
  teddy::GraphStats stats;
  {
    auto t = ctx.record.timings().scope("stats");
    stats = teddy::compute_graph_stats(g);
  }
  teddy::SaveReport save;
  {
    auto t = ctx.record.timings().scope("write");
    teddy::SaveOptions so;
    so.gzip_level = o.gzip_level;
    so.overwrite = o.overwrite;
    teddy::save_graph(g, o.out_graph, so, &save);
  }
  ctx.record.metrics()["graph"] = teddy::to_json(stats);
  ctx.record.metrics()["bytes_written"] = save.bytes_written;
  ctx.record.run_extra()["bytes_per_edge"] =
      g.num_edges() ? static_cast<double>(common::peak_rss_bytes() - rss_before) /
                          static_cast<double>(g.num_edges())
                    : 0.0;
  common::log_info(common::cat("wrote ", g.num_edges(), " edges to '", o.out_graph, "'"));
  print_stats(o.out_graph, stats);
}

}  // namespace

void add_graph_commands(CLI::App& app) {
  CLI::App* graph =
      app.add_subcommand("graph", "Graphs: statistics, generators, format conversion");
  graph->configurable();

  auto stats = std::make_shared<StatsOptions>();
  CLI::App* s = graph->add_subcommand(
      "stats", "Print nodes, edges, components, isolated nodes and degrees of a graph");
  s->add_option("path", stats->path,
                "OGB raw graph directory, or an edge-list file ('src dst' per line)")
      ->required();
  stats->read.add_to(s);
  s->footer(
      "Examples:\n"
      "  sparsetrain graph stats ../shared/data/cora\n"
      "  sparsetrain graph stats my_edges.txt --self-loops drop --out stats.json");
  set_command_runner(s, [stats](CommandContext& ctx) { run_stats(*stats, ctx); });

  auto gen = std::make_shared<GenerateOptions>();
  CLI::App* g =
      graph->add_subcommand("generate", "Generate a seeded synthetic graph in the OGB raw layout");
  g->add_option(
       "kind", gen->kind,
       "csbm: contextual SBM with features, labels and a public split (Cora-sized by default);\n"
       "powerlaw: R-MAT structure, scales to 1e8 edges")
      ->required()
      ->check(CLI::IsMember({"csbm", "powerlaw"}));
  g->add_option("--out-graph", gen->out_graph,
                "Directory to write (must not exist unless --overwrite)")
      ->required();
  g->add_flag("--overwrite", gen->overwrite, "Replace an existing graph directory");
  g->add_option("--nodes", gen->nodes,
                "Nodes (csbm default 2708; powerlaw default edges/8 rounded up to 2^k)");
  g->add_option("--edges", gen->edges,
                "Undirected edges, exact (csbm default 5278; powerlaw default 1e6)");
  g->add_option("--classes", gen->classes, "csbm: classes")->check(CLI::Range(2, 1000));
  g->add_option("--feature-dim", gen->feature_dim, "csbm: feature dimension (0 = none)");
  g->add_flag("--stream", gen->stream,
              "powerlaw: write the pairs as they are drawn, O(nodes) memory (for graphs beyond "
              "memory; repeated pairs are kept, no statistics)");
  g->add_option("--degree-exponent", gen->degree_exponent,
                "csbm: power-law tail exponent of the degrees (degree-corrected SBM, > 2; about "
                "2.5 for ogbn-products); 0: Poisson degrees");
  g->add_option("--homophily", gen->homophily, "csbm: fraction of edges inside a class")
      ->check(CLI::Range(0.0, 1.0));
  g->add_option("--signal", gen->signal,
                "csbm: gaussian: norm of the class means relative to the feature noise; words:\n"
                "odds of a word coming from the class topic");
  g->add_option("--features", gen->features,
                "csbm: gaussian (dense class means + noise) or words (binary bag of words,\n"
                "sparse like Planetoid's)")
      ->check(CLI::IsMember({"gaussian", "words"}));
  g->add_option("--words", gen->words, "csbm --features words: distinct words per node")
      ->check(CLI::Range(1, 1 << 20));
  add_gzip_level_option(g, gen->gzip_level);
  g->footer(
      "Examples:\n"
      "  sparsetrain graph generate csbm --out-graph data/csbm --seed 1\n"
      "  sparsetrain graph generate powerlaw --edges 10000000 --gzip-level 1 --out-graph "
      "data/pl10m");
  set_command_runner(g, [gen](CommandContext& ctx) { run_generate(*gen, ctx); });
}

}  // namespace sparsetrain::cli
