// TEDDY, random and UGS ticket search over levels and seeds (see ticket_search.h).
#include "teddy/gnn/ticket_search.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "common/timer.h"
#include "teddy/gnn/graph_tensors.h"
#include "teddy/gnn/ugs.h"
#include "teddy/gnn/weight_projection.h"
#include "teddy/prune/edge_scorer.h"
#include "teddy/prune/edge_selection.h"

namespace sparsetrain::teddy {

SparsityLevel paper_level(int k) { return {1.0 - std::pow(0.95, k), 1.0 - std::pow(0.8, k)}; }

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

double stddev(const std::vector<double>& v) {
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

int count_trainings(const TicketOptions& options) {
  const int levels = static_cast<int>(options.levels.size());
  const bool rounds = options.method == "ugs" || options.method == "wdglt";
  return options.seeds * (1 + levels * (rounds ? 2 : 1));
}

namespace {

struct Search {
  const Graph& graph;
  const TicketOptions& o;
  const std::function<void(int, int)>& progress;
  int done = 0, total = 0;

  TrainPhases phases = {};  // summed over every training of the search

  TrainResult train(GnnModelImpl& model, const GraphTensors& g, const TrainOptions& t) {
    TrainResult r = train_node_classifier(model, g, t);
    phases += r.phases;
    return r;
  }

  void step() {
    ++done;
    if (progress) progress(done, total);
  }

  std::shared_ptr<GnnModelImpl> new_model(std::uint64_t seed, const GraphTensors& g) const {
    torch::manual_seed(seed);
    return make_gnn_model(o.model, g.num_features, g.num_classes, o.gnn);
  }

  // The graph sparsities of the levels, sorted and unique, and the index of each level in them.
  std::vector<double> graph_levels(std::vector<std::size_t>* index) const {
    std::vector<double> s;
    for (const SparsityLevel& l : o.levels) s.push_back(l.graph);
    std::sort(s.begin(), s.end());
    s.erase(std::unique(s.begin(), s.end()), s.end());
    for (const SparsityLevel& l : o.levels) {
      index->push_back(
          static_cast<std::size_t>(std::lower_bound(s.begin(), s.end(), l.graph) - s.begin()));
    }
    return s;
  }

  double achieved_graph_sparsity(const std::vector<std::uint8_t>& keep) const {
    std::uint64_t pruned = 0;
    for (std::uint8_t k : keep) pruned += k ? 0 : 1;
    return graph.num_edges() ? static_cast<double>(pruned) / static_cast<double>(graph.num_edges())
                             : 0.0;
  }

  void record(LevelResult& level, GnnModelImpl& model, const GraphTensors& g, const TrainResult& r,
              double ticket_seconds, const std::vector<std::uint8_t>& keep,
              const std::vector<at::Tensor>& weights) {
    level.test.push_back(r.test_accuracy);
    level.valid.push_back(r.valid_accuracy);
    level.ticket_seconds.push_back(ticket_seconds);
    const double n = static_cast<double>(level.test.size());
    level.weight_sparsity += (zero_fraction(weights) - level.weight_sparsity) / n;
    level.graph_sparsity += (achieved_graph_sparsity(keep) - level.graph_sparsity) / n;
    level.macs += (model.inference_macs(g) - level.macs) / n;
  }

  TicketReport run() {
    total = count_trainings(o);
    TicketReport report;
    report.num_edges = static_cast<std::int64_t>(graph.num_edges());
    report.levels.resize(o.levels.size());
    for (std::size_t i = 0; i < o.levels.size(); ++i) report.levels[i].target = o.levels[i];

    const GraphTensors full = make_graph_tensors(graph, nullptr, o.split);
    std::vector<std::size_t> level_index;
    const std::vector<double> sparsities = graph_levels(&level_index);

    // TEDDY's score does not depend on the seed: score and select once.
    EdgeLevels teddy_levels;
    double score_seconds = 0;
    if (o.method == "teddy" && !o.levels.empty()) {
      common::Timer t;
      teddy_levels = select_pruned_edges(make_edge_scorer("teddy", 0)->score(graph), sparsities);
      score_seconds = t.seconds();
    }

    for (int s = 0; s < o.seeds; ++s) {
      const std::uint64_t seed = o.seed + static_cast<std::uint64_t>(s);
      auto dense_model = new_model(seed, full);
      TrainOptions dense_train = o.train;
      dense_train.weight_sparsity = 0;
      dense_train.teacher_logits = at::Tensor();
      const TrainResult dense = train(*dense_model, full, dense_train);
      report.dense_test.push_back(dense.test_accuracy);
      report.dense_valid.push_back(dense.valid_accuracy);
      report.dense_seconds.push_back(dense.seconds);
      report.dense_macs = dense_model->inference_macs(full);
      step();

      if (o.levels.empty()) {
        continue;  // dense only
      } else if (o.method == "teddy") {
        run_teddy(report, teddy_levels, level_index, seed, dense, score_seconds);
      } else if (o.method == "random") {
        run_random(report, sparsities, level_index, seed);
      } else if (o.method == "ugs") {
        run_rounds(report, seed, l1_mask_objective(o.ugs_s1, o.ugs_s2));
      } else if (o.method == "wdglt") {
        run_rounds(report, seed, wasserstein_mask_objective(o.wdglt));
      } else {
        throw common::UsageError("unknown method '" + o.method + "'",
                                 "choose teddy, random, ugs or wdglt");
      }
    }
    report.phases = phases;
    return report;
  }

  void run_teddy(TicketReport& report, const EdgeLevels& selection,
                 const std::vector<std::size_t>& level_index, std::uint64_t seed,
                 const TrainResult& teacher, double score_seconds) {
    for (std::size_t i = 0; i < o.levels.size(); ++i) {
      const std::vector<std::uint8_t> keep = selection.keep_mask(level_index[i]);
      const GraphTensors g = make_graph_tensors(graph, &keep, o.split);
      auto model = new_model(seed, g);  // same init as the teacher
      TrainOptions t = o.train;
      t.weight_sparsity = o.levels[i].weight;
      t.teacher_logits = teacher.best_logits;
      const TrainResult r = train(*model, g, t);
      record(report.levels[i], *model, g, r, teacher.seconds + score_seconds + r.seconds, keep,
             projection_parameters(*model, o.train.projection));
      step();
    }
  }

  void run_random(TicketReport& report, const std::vector<double>& sparsities,
                  const std::vector<std::size_t>& level_index, std::uint64_t seed) {
    common::Timer select_timer;
    const EdgeLevels selection =
        select_pruned_edges(make_edge_scorer("random", seed)->score(graph), sparsities);
    const double select_seconds = select_timer.seconds();
    for (std::size_t i = 0; i < o.levels.size(); ++i) {
      const std::vector<std::uint8_t> keep = selection.keep_mask(level_index[i]);
      const GraphTensors g = make_graph_tensors(graph, &keep, o.split);
      auto model = new_model(seed, g);
      TrainOptions t = o.train;
      t.weight_sparsity = 0;
      t.teacher_logits = at::Tensor();
      const auto params = projection_parameters(*model, o.train.projection);
      t.fixed_masks = random_masks(params, o.levels[i].weight, seed ^ 0x5eedULL);
      const TrainResult r = train(*model, g, t);
      record(report.levels[i], *model, g, r, select_seconds + r.seconds, keep, params);
      step();
    }
  }

  // UGS / WD-GLT rounds (ugs.h), one per level in order: a level is reached by pruning the
  // previous one's ticket further, so its ticket time is the sum of the rounds so far.
  void run_rounds(TicketReport& report, std::uint64_t seed,
                  std::shared_ptr<const MaskSearchObjective> objective) {
    for (std::size_t i = 1; i < o.levels.size(); ++i) {
      if (o.levels[i].graph < o.levels[i - 1].graph ||
          o.levels[i].weight < o.levels[i - 1].weight) {
        throw common::UsageError(
            o.method + " levels must be ascending in graph and weight sparsity",
            "list --levels from the sparsest to the densest");
      }
    }
    const UgsTrainFn train_fn = [this](GnnModelImpl& model, const GraphTensors& g,
                                       const TrainOptions& t) { return train(model, g, t); };
    UgsPruner ugs(graph, new_model(seed, make_graph_tensors(graph, nullptr, o.split)),
                  {std::move(objective), o.train, o.split}, seed);
    double elapsed = 0;
    for (std::size_t i = 0; i < o.levels.size(); ++i) {
      common::Timer round_timer;
      ugs.search_masks(i, train_fn);
      step();
      ugs.prune_to(o.levels[i].graph, o.levels[i].weight);
      const TrainResult r = ugs.retrain(train_fn);
      elapsed += round_timer.seconds();
      record(report.levels[i], ugs.model(), ugs.ticket(), r, elapsed, ugs.keep(),
             ugs.model().weight_matrices());
      step();
    }
  }
};

}  // namespace

TicketReport find_tickets(const Graph& graph, const TicketOptions& options,
                          const std::function<void(int, int)>& progress) {
  Search search{graph, options, progress};
  return search.run();
}

}  // namespace sparsetrain::teddy
