// Ticket search on a small contextual SBM with few epochs: exact graph and weight counts per
// level for TEDDY, random and every UGS round; a seeded run is deterministic; the trainer picks
// the best-validation epoch.
#include "teddy/gnn/ticket_search.h"

#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cmath>

#include "teddy/gnn/graph_tensors.h"
#include "teddy/gnn/weight_projection.h"
#include "teddy/graph/graph_generator.h"
#include "teddy/prune/edge_selection.h"

namespace teddy = sparsetrain::teddy;

namespace {

teddy::Graph small_csbm() {
  teddy::CsbmOptions o;
  o.nodes = 300;
  o.edges = 900;
  o.classes = 3;
  o.feature_dim = 24;
  o.seed = 5;
  return teddy::generate_csbm(o);
}

teddy::TicketOptions small_options(const std::string& method, const std::string& model = "gcn") {
  teddy::TicketOptions o;
  o.model = model;
  o.method = method;
  o.gnn.hidden = 16;
  o.gnn.heads = 2;
  o.train.epochs = 6;
  o.train.kd_lambda = 1;
  for (int k = 1; k <= 3; ++k) o.levels.push_back(teddy::paper_level(k));
  o.seed = 11;
  return o;
}

double expected_graph_sparsity(const teddy::Graph& g, double s) {
  const std::uint64_t m = g.num_edges();
  return static_cast<double>(teddy::pruned_edge_count(s, m, m - 0)) / static_cast<double>(m);
}

}  // namespace

TEST_CASE("UGS and WD-GLT prune to the exact edge and weight counts in every round") {
  const teddy::Graph g = small_csbm();
  REQUIRE(g.num_self_loops == 0);
  for (const std::string method : {"ugs", "wdglt"}) {
    INFO(method);
    const teddy::TicketOptions o = small_options(method);
    const teddy::TicketReport r = teddy::find_tickets(g, o);
    REQUIRE(r.levels.size() == 3);
    const std::int64_t n = 24 * 16 + 16 * 3;  // GCN weight matrices
    for (int k = 1; k <= 3; ++k) {
      const teddy::LevelResult& l = r.levels[static_cast<std::size_t>(k - 1)];
      INFO("round " << k);
      CHECK(l.graph_sparsity == doctest::Approx(expected_graph_sparsity(g, 1 - std::pow(0.95, k))));
      CHECK(l.weight_sparsity ==
            doctest::Approx(static_cast<double>(teddy::zero_count(n, 1 - std::pow(0.8, k))) / n));
      CHECK(l.ticket_seconds[0] > 0);
    }
    // Round counts grow: ≈ 5 % of the remaining edges, 20 % of the remaining weights.
    CHECK(r.levels[1].graph_sparsity > r.levels[0].graph_sparsity);
    CHECK(r.levels[2].weight_sparsity > r.levels[1].weight_sparsity);
  }
}

TEST_CASE("SAGE tickets reach the requested sparsities with every method") {
  const teddy::Graph g = small_csbm();
  for (const std::string method : {"teddy", "random", "ugs", "wdglt"}) {
    teddy::TicketOptions o = small_options(method, "sage");
    o.levels = {teddy::paper_level(1), teddy::paper_level(2)};
    const teddy::TicketReport r = teddy::find_tickets(g, o);
    INFO(method);
    CHECK(r.levels[1].graph_sparsity ==
          doctest::Approx(expected_graph_sparsity(g, 1 - std::pow(0.95, 2))));
    CHECK(r.levels[1].macs < r.dense_macs);
    CHECK(r.levels[1].weight_sparsity > r.levels[0].weight_sparsity);
  }
}

TEST_CASE("TEDDY and random tickets reach the requested sparsities exactly") {
  const teddy::Graph g = small_csbm();
  for (const std::string method : {"teddy", "random"}) {
    for (const std::string model : {"gcn", "gat", "gin"}) {
      teddy::TicketOptions o = small_options(method, model);
      o.levels = {teddy::paper_level(5)};
      const teddy::TicketReport r = teddy::find_tickets(g, o);
      auto m = teddy::make_gnn_model(model, 24, 3, o.gnn);
      const std::int64_t n = teddy::total_numel(m->parameters());
      INFO(method << " " << model);
      CHECK(r.levels[0].graph_sparsity ==
            doctest::Approx(expected_graph_sparsity(g, 1 - std::pow(0.95, 5))));
      CHECK(r.levels[0].weight_sparsity ==
            doctest::Approx(static_cast<double>(teddy::zero_count(n, 1 - std::pow(0.8, 5))) / n));
      CHECK(r.levels[0].macs < r.dense_macs);
    }
  }
}

TEST_CASE("a seeded run is deterministic and another seed differs") {
  const teddy::Graph g = small_csbm();
  teddy::TicketOptions o = small_options("teddy");
  o.levels = {teddy::paper_level(2)};
  o.train.epochs = 15;
  const teddy::TicketReport a = teddy::find_tickets(g, o);
  const teddy::TicketReport b = teddy::find_tickets(g, o);
  CHECK(a.dense_test == b.dense_test);
  CHECK(a.levels[0].test == b.levels[0].test);
  CHECK(a.levels[0].valid == b.levels[0].valid);
  // Same seed, the trained logits match bit for bit.
  const teddy::GraphTensors t = teddy::make_graph_tensors(g, nullptr);
  auto train = [&](std::uint64_t seed) {
    torch::manual_seed(seed);
    auto m = teddy::make_gnn_model("gcn", t.num_features, t.num_classes, o.gnn);
    return teddy::train_node_classifier(*m, t, o.train).best_logits;
  };
  CHECK(torch::equal(train(4), train(4)));
  CHECK_FALSE(torch::equal(train(4), train(5)));
}

TEST_CASE("training learns the SBM and reports the best-validation epoch") {
  const teddy::Graph g = small_csbm();
  const teddy::GraphTensors t = teddy::make_graph_tensors(g, nullptr);
  torch::manual_seed(0);
  teddy::GnnOptions go;
  go.hidden = 16;
  auto m = teddy::make_gnn_model("gcn", t.num_features, t.num_classes, go);
  teddy::TrainOptions o;
  o.epochs = 60;
  const teddy::TrainResult r = teddy::train_node_classifier(*m, t, o);
  CHECK(r.best_epoch >= 0);
  CHECK(r.best_epoch < 60);
  CHECK(r.valid_accuracy > 0.5);  // chance is 1/3
  CHECK(r.valid_accuracy == doctest::Approx(teddy::accuracy(r.best_logits, t.labels, t.valid_idx)));
}
