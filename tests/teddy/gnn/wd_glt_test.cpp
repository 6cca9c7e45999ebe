// WD-GLT's objective: the log-domain Sinkhorn distance against an independent scaling-form
// Sinkhorn (float64, the same iterations), against the exact optimal transport of a 3-point
// assignment, its gradient against finite differences; the class-separation loss against its
// definition; the mask search keeps the edge mask in [0, 1].
#include "teddy/gnn/wd_glt.h"

#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "teddy/gnn/gnn_model.h"
#include "teddy/gnn/graph_tensors.h"
#include "teddy/gnn/sinkhorn.h"
#include "teddy/gnn/tiny_graph.h"
#include "teddy/gnn/ugs.h"

namespace teddy = sparsetrain::teddy;

namespace {

// Sinkhorn in scaling form: K = exp(-M/ε), α = a / (K β), β = b / (Kᵀ α), from β = b; P = α K β.
double scaling_sinkhorn(const at::Tensor& x, const at::Tensor& y, double eps, int iters) {
  const std::int64_t n = x.size(0), m = y.size(0);
  at::Tensor cost = torch::zeros({n, m}, torch::kFloat64);
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t j = 0; j < m; ++j) cost[i][j] = (x[i] - y[j]).pow(2).sum().sqrt();
  }
  const at::Tensor k = torch::exp(-cost / eps);
  const at::Tensor a = torch::full({n}, 1.0 / static_cast<double>(n), torch::kFloat64);
  const at::Tensor b = torch::full({m}, 1.0 / static_cast<double>(m), torch::kFloat64);
  at::Tensor beta = b.clone(), alpha;
  for (int it = 0; it < iters; ++it) {
    alpha = a / k.mv(beta);
    beta = b / k.t().mv(alpha);
  }
  const at::Tensor plan = alpha.unsqueeze(1) * k * beta.unsqueeze(0);
  return (plan * cost).sum().item<double>();
}

// The official formulation in torch ops, differentiated by autograd (what the hand-written
// backward replaces): the reference at ε = 1e-3, where the scaling form underflows.
at::Tensor autograd_sinkhorn(const at::Tensor& x, const at::Tensor& y, double eps, int iters) {
  const at::Tensor cost = torch::cdist(x, y, 2.0);
  const double log_a = -std::log(double(x.size(0))), log_b = -std::log(double(y.size(0)));
  at::Tensor u = torch::zeros({x.size(0), 1}, x.options());
  at::Tensor v = torch::full({1, y.size(0)}, eps * log_b, x.options());
  for (int it = 0; it < iters; ++it) {
    u = eps * (log_a - torch::logsumexp((v - cost) / eps, 1, true));
    v = eps * (log_b - torch::logsumexp((u - cost) / eps, 0, true));
  }
  return (torch::exp((u + v - cost) / eps) * cost).sum();
}

}  // namespace

TEST_CASE(
    "at the official ε = 1e-3 the distance and its gradient equal autograd through torch's "
    "logsumexp (float64)") {
  torch::manual_seed(6);
  const at::Tensor x = torch::softmax(torch::randn({40, 7}, torch::kFloat64) * 3, 1);
  const at::Tensor y = torch::softmax(torch::randn({90, 7}, torch::kFloat64) * 3, 1);
  teddy::SinkhornOptions o;  // ε 1e-3, 10 iterations
  o.stop = 0;
  const at::Tensor xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
  const at::Tensor ya = y.clone().requires_grad_(true), yb = y.clone().requires_grad_(true);
  const at::Tensor ours = teddy::sinkhorn_distance(xa, ya, o);
  const at::Tensor reference = autograd_sinkhorn(xb, yb, o.eps, o.max_iters);
  CHECK(ours.item<double>() == doctest::Approx(reference.item<double>()).epsilon(1e-10));
  ours.backward();
  reference.backward();
  CHECK(torch::allclose(xa.grad(), xb.grad(), /*rtol=*/1e-8, /*atol=*/1e-10));
  CHECK(torch::allclose(ya.grad(), yb.grad(), /*rtol=*/1e-8, /*atol=*/1e-10));
  CHECK(xa.grad().abs().sum().item<double>() > 0);
  // float32, as in training: the same within float rounding
  const at::Tensor x32 = x.to(torch::kFloat32).requires_grad_(true);
  const at::Tensor d32 = teddy::sinkhorn_distance(x32, y.to(torch::kFloat32), o);
  CHECK(d32.item<double>() == doctest::Approx(reference.item<double>()).epsilon(1e-4));
  d32.backward();  // the vectorised float kernels
  const double scale = xb.grad().abs().max().item<double>();
  CHECK((x32.grad().to(torch::kFloat64) - xb.grad()).abs().max().item<double>() < 1e-3 * scale);
}

TEST_CASE("the log-domain Sinkhorn distance equals the scaling form, iteration for iteration") {
  torch::manual_seed(1);
  const at::Tensor x = torch::rand({4, 3}, torch::kFloat64);
  const at::Tensor y = torch::rand({6, 3}, torch::kFloat64);
  for (const int iters : {1, 3, 10}) {
    teddy::SinkhornOptions o;
    o.eps = 0.2;  // K = exp(-M/ε) stays well within float64 for the scaling form
    o.max_iters = iters;
    o.stop = 0;  // every iteration
    CAPTURE(iters);
    CHECK(teddy::sinkhorn_distance(x, y, o).item<double>() ==
          doctest::Approx(scaling_sinkhorn(x, y, o.eps, iters)).epsilon(1e-10));
  }
}

TEST_CASE(
    "one point against one is their Euclidean distance; a small ε finds the optimal "
    "assignment") {
  const at::Tensor p = torch::tensor({{0.0, 0.0}}, torch::kFloat64);
  const at::Tensor q = torch::tensor({{3.0, 4.0}}, torch::kFloat64);
  CHECK(teddy::sinkhorn_distance(p, q).item<double>() == doctest::Approx(5.0));
  // Three points each: the best of the 6 assignments, each pair carrying mass 1/3.
  const at::Tensor x = torch::tensor({{0.0, 0.0}, {1.0, 0.0}, {0.0, 2.0}}, torch::kFloat64);
  const at::Tensor y = torch::tensor({{0.1, 2.1}, {1.2, 0.1}, {0.0, 0.4}}, torch::kFloat64);
  std::array<int, 3> perm = {0, 1, 2};
  double best = 1e9;
  do {
    double c = 0;
    for (int i = 0; i < 3; ++i)
      c += (x[i] - y[perm[static_cast<std::size_t>(i)]]).norm().item<double>();
    best = std::min(best, c / 3);
  } while (std::next_permutation(perm.begin(), perm.end()));
  teddy::SinkhornOptions o;
  o.eps = 1e-2;
  o.max_iters = 500;
  CHECK(teddy::sinkhorn_distance(x, y, o).item<double>() == doctest::Approx(best).epsilon(1e-3));
}

TEST_CASE("the Sinkhorn distance's gradient matches finite differences (float64)") {
  torch::manual_seed(2);
  const at::Tensor x = torch::rand({3, 4}, torch::kFloat64).requires_grad_(true);
  const at::Tensor y = torch::rand({5, 4}, torch::kFloat64);
  teddy::SinkhornOptions o;
  o.eps = 0.1;
  o.stop = 0;
  teddy::sinkhorn_distance(x, y, o).backward();
  const at::Tensor grad = x.grad().clone();
  const double h = 1e-6;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    torch::NoGradGuard no_grad;
    at::Tensor plus = x.detach().clone(), minus = x.detach().clone();
    plus.view(-1)[i] += h;
    minus.view(-1)[i] -= h;
    const double numeric = (teddy::sinkhorn_distance(plus, y, o).item<double>() -
                            teddy::sinkhorn_distance(minus, y, o).item<double>()) /
                           (2 * h);
    CAPTURE(i);
    CHECK(grad.view(-1)[i].item<double>() == doctest::Approx(numeric).epsilon(1e-5));
  }
}

TEST_CASE(
    "the class-separation loss is minus the Sinkhorn distance of each predicted class to "
    "the rest, classes predicted for none or all nodes skipped") {
  // Five nodes, four classes: argmax 0, 0, 2, 2, 2 (classes 1 and 3 predicted for none).
  const at::Tensor logits = torch::tensor({{2.0, 0.0, 1.0, 0.0},
                                           {1.5, 0.2, 0.1, 0.0},
                                           {0.0, 0.5, 3.0, 0.0},
                                           {0.1, 0.0, 0.9, 0.2},
                                           {0.0, 0.0, 2.0, 1.0}},
                                          torch::kFloat64);
  const at::Tensor p = torch::softmax(logits, 1);
  const at::Tensor first = torch::tensor({0, 1}), rest = torch::tensor({2, 3, 4});
  const teddy::SinkhornOptions o;
  const double want =
      -(teddy::sinkhorn_distance(p.index_select(0, first), p.index_select(0, rest), o) +
        teddy::sinkhorn_distance(p.index_select(0, rest), p.index_select(0, first), o))
           .item<double>();
  CHECK(teddy::class_separation_loss(logits, o).item<double>() == doctest::Approx(want));
  const at::Tensor one_class = torch::tensor({{1.0, 0.0}, {2.0, 0.5}}, torch::kFloat64);
  CHECK(teddy::class_separation_loss(one_class, o).item<double>() == 0.0);
}

TEST_CASE("the WD-GLT mask search keeps the edge mask in [0, 1] and prunes to the level") {
  const teddy::Graph graph = teddy::test::tiny_graph();
  torch::manual_seed(4);
  teddy::GnnOptions gnn;
  gnn.hidden = 8;
  const teddy::GraphTensors full = teddy::make_graph_tensors(graph, nullptr);
  auto model = teddy::make_gnn_model("gcn", full.num_features, full.num_classes, gnn);
  teddy::UgsOptions options;
  teddy::WdGltOptions wd;
  wd.lambda = 10;  // large: the term must move the masks
  options.objective = teddy::wasserstein_mask_objective(wd);
  options.train.epochs = 20;
  options.train.lr = 0.2;
  teddy::UgsPruner pruner(graph, model, options, 1);
  at::Tensor mask_seen;
  double lowest = 1, highest = 0;
  pruner.search_masks(
      0, [&](teddy::GnnModelImpl& m, const teddy::GraphTensors& g, teddy::TrainOptions t) {
        const auto inner = t.after_step;
        t.after_step = [&, inner] {
          inner();
          lowest = std::min(lowest, t.edge_mask.min().item<double>());
          highest = std::max(highest, t.edge_mask.max().item<double>());
          mask_seen = t.edge_mask;
        };
        return teddy::train_node_classifier(m, g, t);
      });
  REQUIRE(mask_seen.defined());
  CHECK(lowest >= 0.0);
  CHECK(highest <= 1.0);
  CHECK(lowest < 0.99);  // the masks moved
  pruner.prune_to(0.3, 0.5);
  const auto kept = std::count(pruner.keep().begin(), pruner.keep().end(), 1);
  CHECK(kept == 10 - 3);  // floor(0.3 · 10) of the 10 undirected edges (the loop is never pruned)
}
