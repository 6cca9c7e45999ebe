// TEDDY, random and UGS ticket search over levels and seeds (see ticket_search.h).
#include "teddy/gnn/ticket_search.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "common/error.h"
#include "common/timer.h"
#include "teddy/prune/edge_scorer.h"
#include "teddy/prune/edge_selection.h"
#include "teddy/gnn/graph_tensors.h"
#include "teddy/gnn/weight_projection.h"

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
    const int levels = static_cast<int>(o.levels.size());
    total = o.seeds * (1 + levels * (o.method == "ugs" ? 2 : 1));
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
        run_ugs(report, seed);
      } else {
        throw common::UsageError("unknown method '" + o.method + "'",
                                 "choose teddy, random or ugs");
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

  void run_ugs(TicketReport& report, std::uint64_t seed) {
    for (std::size_t i = 1; i < o.levels.size(); ++i) {
      if (o.levels[i].graph < o.levels[i - 1].graph ||
          o.levels[i].weight < o.levels[i - 1].weight) {
        throw common::UsageError("UGS levels must be ascending in graph and weight sparsity",
                                 "list --levels from the sparsest to the densest");
      }
    }
    const std::int64_t m = static_cast<std::int64_t>(graph.num_edges());
    std::vector<std::uint8_t> keep(graph.num_edges(), 1);
    auto model = new_model(seed, make_graph_tensors(graph, nullptr, o.split));
    std::vector<at::Tensor> init;  // rewind target
    for (const at::Tensor& p : model->parameters()) init.push_back(p.detach().clone());
    auto rewind = [&] {
      torch::NoGradGuard no_grad;
      const auto params = model->parameters();
      for (std::size_t j = 0; j < params.size(); ++j) params[j].copy_(init[j]);
    };
    std::vector<at::Tensor> binary;  // fixed 0/1 weight masks
    for (const at::Tensor& w : model->weight_matrices()) binary.push_back(torch::ones_like(w));
    double elapsed = 0;

    for (std::size_t i = 0; i < o.levels.size(); ++i) {
      common::Timer round_timer;
      // 1. Mask search from the rewound init on the current ticket.
      rewind();
      const GraphTensors g = make_graph_tensors(graph, &keep, o.split);
      // Masks start at 1 plus ±1e-5 seeded noise, as the official UGS code: edges and weights that
      // only feel the L1 term otherwise move in lockstep and tie, and the tie-break (edge id)
      // would prune low-numbered nodes' edges first.
      at::Generator gen = at::detail::createCPUGenerator(seed * 1000003ULL + i);
      auto noisy_ones = [&](const at::Tensor& like) {
        return 1.0 + (2.0 * torch::rand(like.sizes(), gen, like.options()) - 1.0) * 1e-5;
      };
      at::Tensor edge_mask = noisy_ones(torch::empty({m})).requires_grad_(true);
      std::vector<at::Tensor> weight_masks;
      for (const at::Tensor& b : binary) {
        weight_masks.push_back((b * noisy_ones(b)).requires_grad_(true));
      }
      model->weight_masks = weight_masks;
      at::Tensor best_edge_mask = edge_mask.detach().clone();
      std::vector<at::Tensor> best_weight_masks;
      for (const at::Tensor& w : weight_masks) best_weight_masks.push_back(w.detach().clone());
      TrainOptions search = o.train;
      search.weight_sparsity = 0;
      search.teacher_logits = at::Tensor();
      search.edge_mask = edge_mask;
      search.extra_parameters = weight_masks;
      search.extra_parameters.push_back(edge_mask);
      search.extra_loss = [&] {
        at::Tensor l1 = o.ugs_s1 * edge_mask.abs().sum();
        for (const at::Tensor& w : weight_masks) l1 = l1 + o.ugs_s2 * w.abs().sum();
        return l1;
      };
      search.after_step = [&] {  // pruned weights stay pruned
        torch::NoGradGuard no_grad;
        for (std::size_t j = 0; j < binary.size(); ++j) weight_masks[j].mul_(binary[j]);
      };
      search.on_best = [&] {
        best_edge_mask = edge_mask.detach().clone();
        for (std::size_t j = 0; j < weight_masks.size(); ++j) {
          best_weight_masks[j] = weight_masks[j].detach().clone();
        }
      };
      train(*model, g, search);
      model->weight_masks.clear();
      step();

      // 2. Prune the lowest |mask| down to the level (already pruned entries score -1).
      std::vector<float> edge_scores(graph.num_edges());
      const at::Tensor em = best_edge_mask.abs().contiguous();
      const float* emp = em.data_ptr<float>();
      for (std::size_t e = 0; e < graph.num_edges(); ++e) {
        const Edge& edge = graph.edges[e];
        edge_scores[e] = edge.src == edge.dst ? std::numeric_limits<float>::infinity()
                         : keep[e]            ? emp[e]
                                              : -1.0f;
      }
      keep = select_pruned_edges(edge_scores, {o.levels[i].graph}).keep_mask(0);
      std::vector<at::Tensor> weight_scores;
      for (std::size_t j = 0; j < binary.size(); ++j) {
        weight_scores.push_back(torch::where(binary[j] > 0, best_weight_masks[j].abs(),
                                             torch::full_like(binary[j], -1.0)));
      }
      binary = lowest_k_masks(weight_scores, zero_count(total_numel(binary), o.levels[i].weight));

      // 3. Rewind and retrain the ticket with fixed masks.
      rewind();
      const GraphTensors ticket = make_graph_tensors(graph, &keep, o.split);
      TrainOptions retrain = o.train;
      retrain.weight_sparsity = 0;
      retrain.teacher_logits = at::Tensor();
      retrain.projection = ProjectionSet::kWeights;
      retrain.fixed_masks = binary;
      const TrainResult r = train(*model, ticket, retrain);
      elapsed += round_timer.seconds();
      record(report.levels[i], *model, ticket, r, elapsed, keep, model->weight_matrices());
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
