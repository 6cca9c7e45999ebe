// `sparsetrain teddy run`: find graph lottery tickets with TEDDY, UGS or random pruning at one
// or more (graph, weight) sparsity levels, train them over several seeds, and report per level
// the achieved sparsities, accuracy (mean ± std over seeds), inference MACs against dense and
// the wall time of finding the ticket. Without --graph it runs on the embedded synthetic dataset
// (a Cora-sized contextual SBM, graph_generator.h). The work is in lib/teddy/gnn/ticket_search.h.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "cli.h"
#include "common/error.h"
#include "common/log.h"
#include "common/progress.h"
#include "graph_read_flags.h"
#include "teddy/gnn/ticket_search.h"
#include "teddy/graph/graph_generator.h"
#include "teddy/graph/graph_io.h"

namespace sparsetrain::cli {

namespace {

namespace teddy = sparsetrain::teddy;

struct RunOptions {
  std::string graph;
  std::string model = "gcn";
  std::string method = "teddy";
  std::vector<double> graph_sparsity;
  std::vector<double> weight_sparsity;
  std::string levels;
  int seeds = 1;
  double lambda = 10.0;
  double temperature = 1.0;
  std::string projection = "all";
  int epochs = 200;
  double lr = 0.01;
  double weight_decay = 5e-4;
  std::int64_t hidden = 0;
  double dropout = -1;
  std::int64_t heads = 8;
  double ugs_s1 = 1e-2;
  double ugs_s2 = 1e-2;
  double wd_lambda = 0.1;
  std::string split;  // empty: the dataset's own (dataset_info), else "public", else the only one
  GraphReadFlags read;
};

// "paper" → k = 1..20; "5,10" → those paper levels; else the paired explicit sparsities.
std::vector<teddy::SparsityLevel> requested_levels(const RunOptions& o, std::vector<int>* ks) {
  std::vector<teddy::SparsityLevel> out;
  if (!o.levels.empty()) {
    if (!o.graph_sparsity.empty() || !o.weight_sparsity.empty()) {
      throw common::UsageError("--levels and --graph-sparsity/--weight-sparsity are exclusive",
                               "drop one of them");
    }
    if (o.levels == "paper") {
      for (int k = 1; k <= 20; ++k) ks->push_back(k);
    } else {
      std::stringstream in(o.levels);
      std::string item;
      while (std::getline(in, item, ',')) {
        char* end = nullptr;
        const long k = std::strtol(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || k < 1 || k > 60) {
          throw common::UsageError("bad level '" + item + "' in --levels '" + o.levels + "'",
                                   "pass paper, or paper level numbers such as 5,10");
        }
        ks->push_back(static_cast<int>(k));
      }
      std::sort(ks->begin(), ks->end());
      ks->erase(std::unique(ks->begin(), ks->end()), ks->end());
    }
    for (int k : *ks) out.push_back(teddy::paper_level(k));
    return out;
  }
  if (o.graph_sparsity.empty() && o.weight_sparsity.empty()) return out;  // dense only
  if (o.weight_sparsity.size() != o.graph_sparsity.size()) {
    throw common::UsageError("--graph-sparsity given " + std::to_string(o.graph_sparsity.size()) +
                                 " time(s) but --weight-sparsity " +
                                 std::to_string(o.weight_sparsity.size()),
                             "give one --weight-sparsity per --graph-sparsity (use 0 for none)");
  }
  for (std::size_t i = 0; i < o.graph_sparsity.size(); ++i) {
    out.push_back({o.graph_sparsity[i], o.weight_sparsity[i]});
    ks->push_back(0);
  }
  return out;
}

teddy::Graph load_dataset(const RunOptions& o, std::string* name) {
  if (o.graph.empty()) {
    // Bag-of-words features (1.3 % non-zero, as Cora's) rather than the generator's dense
    // Gaussians: with dense features the first layer's X·W is 77x the work and this default
    // command took over 10 minutes instead of seconds.
    *name = "csbm (embedded, Cora-sized, bag-of-words features)";
    teddy::CsbmOptions c;
    c.features = teddy::CsbmFeatures::kWords;
    c.signal = 0.2;  // dense GCN ~86 % test (Cora: 82 %); 0.3 gives 92 %, 1 gives 98 %
    return teddy::generate_csbm(c);
  }
  *name = o.graph;
  teddy::Graph g = teddy::load_graph_any(o.graph, o.read.options());
  teddy::require_features(g, o.graph, "teddy run");
  return g;
}

// The split to train on: --split, else the one the dataset names (OGB: time, sales_ranking),
// else "public" (the Planetoid graphs), else the graph's only split.
std::string chosen_split(const RunOptions& o, const teddy::Graph& g) {
  if (!o.split.empty()) return o.split;
  if (!o.graph.empty() && std::filesystem::is_directory(o.graph)) {
    const std::string own = teddy::dataset_info(o.graph).split;
    if (!own.empty() && g.splits.count(own)) return own;
  }
  if (g.splits.count("public") || g.splits.size() != 1) return "public";
  return g.splits.begin()->first;
}

nlohmann::json stats_json(const std::vector<double>& v) {
  return {{"mean", teddy::mean(v)}, {"std", teddy::stddev(v)}, {"values", v}};
}

void run_teddy_run(const RunOptions& o, CommandContext& ctx) {
  std::vector<int> ks;
  teddy::TicketOptions t;
  t.levels = requested_levels(o, &ks);
  for (const teddy::SparsityLevel& l : t.levels) {
    if (!(l.graph >= 0 && l.graph < 1) || !(l.weight >= 0 && l.weight < 1)) {
      throw common::UsageError(
          "sparsity level (" + std::to_string(l.graph) + ", " + std::to_string(l.weight) +
              ") is outside [0, 1)",
          "pass fractions such as --graph-sparsity 0.3 --weight-sparsity 0.67");
    }
  }
  // UGS and WD-GLT are iterative: a paper level k is reached by rounds 1..k (5 % / 20 % per
  // round), so all rounds up to the largest requested level run and the requested ones are
  // reported.
  std::vector<int> requested_ks = ks;
  if ((o.method == "ugs" || o.method == "wdglt") && !ks.empty() && ks.front() > 0) {
    t.levels.clear();
    ks.clear();
    for (int k = 1; k <= requested_ks.back(); ++k) {
      t.levels.push_back(teddy::paper_level(k));
      ks.push_back(k);
    }
  }
  t.model = o.model;
  t.method = o.method;
  t.seeds = o.seeds;
  t.seed = ctx.global.seed;
  t.gnn.hidden = o.hidden;
  t.gnn.dropout = o.dropout;
  t.gnn.heads = o.heads;
  t.train.epochs = o.epochs;
  t.train.lr = o.lr;
  t.train.weight_decay = o.weight_decay;
  t.train.projection = teddy::parse_projection_set(o.projection);
  t.train.kd_lambda = o.lambda;
  t.train.kd_temperature = o.temperature;
  t.ugs_s1 = o.ugs_s1;
  t.ugs_s2 = o.ugs_s2;
  t.wdglt.lambda = o.wd_lambda;
  if (ctx.global.dry_run) {
    std::printf("would train %s with %s on %s at %zu level(s) x %d seed(s), %d epochs each\n",
                o.model.c_str(), o.method.c_str(), o.graph.empty() ? "csbm" : o.graph.c_str(),
                t.levels.size(), o.seeds, o.epochs);
    return;
  }
  std::string dataset;
  teddy::Graph g = [&] {
    auto timer = ctx.record.timings().scope("load");
    return load_dataset(o, &dataset);
  }();
  t.split = chosen_split(o, g);
  // Before any training (make_graph_tensors checks it again, for every caller of the library).
  if (g.splits.count(t.split)) teddy::check_node_split(g.splits.at(t.split), g.num_nodes, t.split);
  common::Progress bar("train", static_cast<std::uint64_t>(teddy::count_trainings(t)), "runs");
  teddy::TicketReport r;
  {
    auto timer = ctx.record.timings().scope("train");
    r = teddy::find_tickets(g, t, [&](int done, int) {
      bar.set(static_cast<std::uint64_t>(done));
      common::check_interrupt();
    });
  }
  bar.finish();
  ctx.record.timings().add("train.cpu.forward", r.phases.forward);
  ctx.record.timings().add("train.cpu.backward", r.phases.backward);
  ctx.record.timings().add("train.cpu.step", r.phases.step);
  ctx.record.timings().add("train.cpu.eval", r.phases.eval);

  nlohmann::json& m = ctx.record.metrics();
  m["dataset"] = dataset;
  m["split"] = t.split;
  m["model"] = o.model;
  m["method"] = o.method;
  m["seeds"] = o.seeds;
  m["edges"] = r.num_edges;
  m["dense"] = {{"test_accuracy", stats_json(r.dense_test)},
                {"valid_accuracy", stats_json(r.dense_valid)},
                {"seconds", stats_json(r.dense_seconds)},
                {"inference_macs", r.dense_macs}};
  std::printf("dataset %s  model %s  method %s  seeds %d\n", dataset.c_str(), o.model.c_str(),
              o.method.c_str(), o.seeds);
  std::printf("%-6s %8s %8s %17s %17s %9s %10s\n", "level", "graph", "weight", "test acc %",
              "valid acc %", "MACs", "ticket s");
  std::printf("%-6s %8s %8s %8.2f ± %-6.2f %8.2f ± %-6.2f %9s %10.2f\n", "dense", "0", "0",
              100 * teddy::mean(r.dense_test), 100 * teddy::stddev(r.dense_test),
              100 * teddy::mean(r.dense_valid), 100 * teddy::stddev(r.dense_valid), "1.000",
              teddy::mean(r.dense_seconds));
  nlohmann::json levels = nlohmann::json::array();
  for (std::size_t i = 0; i < r.levels.size(); ++i) {
    if (ks[i] > 0 &&
        std::find(requested_ks.begin(), requested_ks.end(), ks[i]) == requested_ks.end()) {
      continue;  // an intermediate UGS round
    }
    const teddy::LevelResult& l = r.levels[i];
    const double macs_ratio = r.dense_macs > 0 ? l.macs / r.dense_macs : 0.0;
    nlohmann::json j = {{"target_graph_sparsity", l.target.graph},
                        {"target_weight_sparsity", l.target.weight},
                        {"graph_sparsity", l.graph_sparsity},
                        {"weight_sparsity", l.weight_sparsity},
                        {"test_accuracy", stats_json(l.test)},
                        {"valid_accuracy", stats_json(l.valid)},
                        {"inference_macs", l.macs},
                        {"macs_vs_dense", macs_ratio},
                        {"ticket_seconds", stats_json(l.ticket_seconds)}};
    if (ks[i] > 0) j["paper_level"] = ks[i];
    levels.push_back(std::move(j));
    const std::string name = ks[i] > 0 ? "k=" + std::to_string(ks[i]) : std::to_string(i + 1);
    std::printf("%-6s %8.4f %8.4f %8.2f ± %-6.2f %8.2f ± %-6.2f %9.3f %10.2f\n", name.c_str(),
                l.graph_sparsity, l.weight_sparsity, 100 * teddy::mean(l.test),
                100 * teddy::stddev(l.test), 100 * teddy::mean(l.valid),
                100 * teddy::stddev(l.valid), macs_ratio, teddy::mean(l.ticket_seconds));
  }
  m["levels"] = std::move(levels);
}

}  // namespace

void add_teddy_run_command(CLI::App& teddy) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* r = teddy.add_subcommand(
      "run", "Find and train graph lottery tickets: TEDDY, UGS, WD-GLT or random pruning");
  r->add_option("--graph", o->graph,
                "OGB raw graph directory with features, labels and a split (default: the "
                "embedded Cora-sized contextual SBM)");
  r->add_option("--model", o->model, "GNN: gcn, gat, gin, sage (GraphSAGE, mean aggregation)")
      ->check(CLI::IsMember(teddy::gnn_model_names()));
  r->add_option("--method", o->method,
                "teddy: one-shot TEDDY edges + l0 weights + distillation; ugs: iterative "
                "learnable masks with L1 penalties; wdglt: the same rounds with WD-GLT's "
                "Wasserstein term; random: random edges and weights")
      ->check(CLI::IsMember({"teddy", "ugs", "wdglt", "random"}));
  r->add_option(
      "--graph-sparsity", o->graph_sparsity,
      "Fraction of undirected edges to prune (repeatable, paired with --weight-sparsity)");
  r->add_option("--weight-sparsity", o->weight_sparsity,
                "Fraction of weights to zero (repeatable)");
  r->add_option("--levels", o->levels,
                "paper: k = 1..20 (graph 1-0.95^k, weights 1-0.8^k); or level numbers, e.g. 5,10");
  r->add_option("--seeds", o->seeds, "Seeds per level (seed, seed+1, ...); accuracy is mean ± std")
      ->check(CLI::Range(1, 1000));
  r->add_option("--lambda", o->lambda, "TEDDY distillation weight λ on KL(teacher || student)")
      ->check(CLI::NonNegativeNumber);
  r->add_option("--temperature", o->temperature, "Distillation temperature")
      ->check(CLI::PositiveNumber);
  r->add_option("--projection", o->projection,
                "l0 projection set: all (every parameter, as the official code) or weights")
      ->check(CLI::IsMember({"all", "weights"}));
  r->add_option("--epochs", o->epochs, "Training epochs per run")->check(CLI::Range(1, 100000));
  r->add_option("--lr", o->lr, "Adam learning rate")->check(CLI::PositiveNumber);
  r->add_option("--weight-decay", o->weight_decay, "Adam weight decay")
      ->check(CLI::NonNegativeNumber);
  r->add_option("--hidden", o->hidden,
                "Hidden width (0: gcn 512, gat 8 per head, gin 512, sage 512)")
      ->check(CLI::NonNegativeNumber);
  r->add_option("--dropout", o->dropout, "Dropout (negative: gcn 0.5, gat 0.6, gin 0.5, sage 0.5)");
  r->add_option("--heads", o->heads, "GAT attention heads")->check(CLI::Range(1, 64));
  r->add_option("--ugs-s1", o->ugs_s1, "UGS: L1 weight on the edge mask")
      ->check(CLI::NonNegativeNumber);
  r->add_option("--ugs-s2", o->ugs_s2, "UGS: L1 weight on the weight masks")
      ->check(CLI::NonNegativeNumber);
  r->add_option("--wd-lambda", o->wd_lambda,
                "WD-GLT: weight of the Wasserstein term between predicted classes")
      ->check(CLI::NonNegativeNumber);
  r->add_option("--split", o->split,
                "Node split under split/ of the graph directory (default: the dataset's own, "
                "e.g. OGB's time or sales_ranking, else public, else the only one)");
  o->read.add_to(r);
  r->footer(
      "Per level: achieved graph and weight sparsity, test/valid accuracy at the best-validation\n"
      "epoch (mean ± std over seeds), inference MACs against the dense model, wall time of\n"
      "finding the ticket (teddy: teacher + score + student; ugs, wdglt: all rounds so far).\n\n"
      "Examples:\n"
      "  sparsetrain teddy run --graph ../shared/data/cora --model gcn --method teddy --levels "
      "5,10 "
      "--seeds 5 --out cora.json\n"
      "  sparsetrain teddy run --method ugs --levels paper --out csbm-ugs.json\n"
      "Without any level it trains and reports the dense model only. On a loaded 2-core machine\n"
      "OMP_NUM_THREADS=1 is often faster (OpenMP threads spin while the other core is busy).");
  set_command_runner(r, [o](CommandContext& ctx) { run_teddy_run(*o, ctx); });
}

}  // namespace sparsetrain::cli
