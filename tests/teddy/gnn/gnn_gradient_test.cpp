// GNN layers on a tiny graph: GCN normalisation against a dense hand formula, and the gradients
// of every parameter (and of the UGS edge mask) of GCN, GAT, GIN and GraphSAGE against central
// finite differences in float64; GraphSAGE's forward against a dense formula.
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include "teddy/gnn/gnn_model.h"
#include "teddy/gnn/graph_tensors.h"
#include "teddy/gnn/tiny_graph.h"

namespace teddy = sparsetrain::teddy;

TEST_CASE("GCN propagation equals D^-1/2 (A + I) D^-1/2 built densely from the edge list") {
  const teddy::Graph graph = teddy::test::tiny_graph();
  const teddy::GraphTensors g = teddy::make_graph_tensors(graph, nullptr);
  at::Tensor a = torch::zeros({7, 7}, torch::kFloat64);
  for (const teddy::Edge& e : graph.edges) {
    a[e.src][e.dst] = 1;
    a[e.dst][e.src] = 1;
  }
  a = a + torch::diag((a.diag() == 0).to(torch::kFloat64));  // remaining self loops
  const at::Tensor dinv = a.sum(1).pow(-0.5);
  const at::Tensor norm = dinv.unsqueeze(1) * a * dinv.unsqueeze(0);
  const at::Tensor h = torch::randn({7, 4}, torch::kFloat64);
  const at::Tensor got = teddy::propagate(g.to(torch::kFloat64), h, g.gcn_norm.to(torch::kFloat64));
  CHECK(
      torch::allclose(got, norm.mm(h), /*rtol=*/1e-6, /*atol=*/1e-6));  // norm is stored as float32
}

TEST_CASE(
    "features are normalised as PyG's NormalizeFeatures: shifted by the global minimum, rows "
    "divided by max(sum, 1)") {
  teddy::Graph graph = teddy::test::tiny_graph();
  // Signed features with row sums below 1 after the shift, and an all-minimum row.
  const at::Tensor raw = torch::tensor({-0.5, 0.0,  0.0,  0.0,  0.0,   //
                                        -0.5, -0.5, -0.5, -0.5, -0.5,  //
                                        0.5,  1.5,  -0.5, -0.5, 2.5,   //
                                        -0.4, -0.5, -0.5, -0.5, -0.5,  //
                                        3.0,  3.0,  3.0,  3.0,  3.0,   //
                                        -0.5, 0.0,  0.5,  1.0,  -0.5,  //
                                        0.0,  0.0,  0.0,  0.0,  0.0},
                                       torch::kFloat32)
                             .view({7, 5});
  graph.features.assign(raw.data_ptr<float>(), raw.data_ptr<float>() + 35);
  const teddy::GraphTensors g = teddy::make_graph_tensors(graph, nullptr);
  CHECK(g.x.layout() == torch::kSparseCsr);
  // Reference: PyG's transform, x - x.min(); x / x.sum(-1).clamp(min=1), computed in torch.
  const at::Tensor shifted = raw - raw.min();
  const at::Tensor want = shifted / shifted.sum(1, /*keepdim=*/true).clamp_min(1.0);
  INFO("got " << g.dense_features() << " want " << want);
  CHECK(torch::allclose(g.dense_features(), want, /*rtol=*/1e-6, /*atol=*/1e-7));
  CHECK(g.dense_features()[3].sum().item<double>() == doctest::Approx(0.1));  // not scaled up
  CHECK(g.x._nnz() == (want != 0).sum().item<std::int64_t>());                // zeros not stored
}

TEST_CASE("dense features run X·W densely and match the CSR product in value and gradient") {
  const teddy::Graph graph = teddy::test::tiny_graph();  // ~60 % non-zero: above the threshold
  const teddy::GraphTensors dense = teddy::make_graph_tensors(graph, nullptr).to(torch::kFloat64);
  REQUIRE(dense.x_dense.defined());
  teddy::GraphTensors sparse = dense;
  sparse.x_dense = at::Tensor();
  const at::Tensor w = torch::randn({5, 3}, torch::kFloat64).requires_grad_(true);
  const at::Tensor r = torch::randn({7, 3}, torch::kFloat64);
  (teddy::feature_matmul(dense, w, 0, false) * r).sum().backward();
  const at::Tensor grad_dense = w.grad().clone();
  w.mutable_grad().zero_();
  (teddy::feature_matmul(sparse, w, 0, false) * r).sum().backward();
  const at::Tensor x = sparse.dense_features();
  CHECK(torch::allclose(teddy::feature_matmul(dense, w, 0, false), x.mm(w)));
  CHECK(torch::allclose(grad_dense, x.t().mm(r)));  // d(sum(XW·R))/dW = Xᵀ R
  CHECK(torch::allclose(w.grad(), x.t().mm(r)));
  // Cora-like 0/1 rows with 1 word in 5 of 50 columns stay sparse.
  teddy::Graph words = graph;
  words.feature_dim = 50;
  words.features.assign(7 * 50, 0.0f);
  for (int v = 0; v < 7; ++v) words.features[v * 50 + v] = 1.0f;
  CHECK_FALSE(teddy::make_graph_tensors(words, nullptr).x_dense.defined());
}

namespace {

// Checks d(sum(logits · R))/dθ for every parameter entry and, if given, the edge mask.
// dense_features: the first layer reads x_dense (tiny_graph is ~60 % non-zero), else the CSR x.
void check_gradients(const std::string& name, bool with_edge_mask, bool dense_features = false) {
  const teddy::Graph graph = teddy::test::tiny_graph();
  teddy::GraphTensors g = teddy::make_graph_tensors(graph, nullptr).to(torch::kFloat64);
  if (!dense_features) g.x_dense = at::Tensor();
  torch::manual_seed(3);
  teddy::GnnOptions o;
  o.hidden = 4;
  o.heads = 2;
  o.dropout = 0;
  o.attention_dropout = 0;
  auto model = teddy::make_gnn_model(name, g.num_features, g.num_classes, o);
  model->to(torch::kFloat64);
  model->eval();
  {  // move GIN's ε away from 0 and every value away from ReLU kinks' neighbourhoods
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(torch::randn_like(p) * 0.1);
  }
  at::Tensor mask;
  if (with_edge_mask)
    mask = (torch::rand({g.num_edges}, torch::kFloat64) + 0.5).requires_grad_(true);
  const at::Tensor r = torch::randn({g.num_nodes, g.num_classes}, torch::kFloat64);
  auto loss = [&] { return (model->forward(g, mask) * r).sum(); };

  loss().backward();
  std::vector<at::Tensor> tensors = model->parameters();
  if (with_edge_mask) tensors.push_back(mask);
  const double h = 1e-6;
  double worst = 0;
  for (at::Tensor& p : tensors) {
    const at::Tensor grad = p.grad().clone();
    at::Tensor flat = p.detach().view({-1});
    for (std::int64_t i = 0; i < flat.numel(); ++i) {
      const double old = flat[i].item<double>();
      double plus, minus;
      {
        torch::NoGradGuard no_grad;
        flat[i] = old + h;
        plus = loss().item<double>();
        flat[i] = old - h;
        minus = loss().item<double>();
        flat[i] = old;
      }
      const double fd = (plus - minus) / (2 * h);
      const double ad = grad.view({-1})[i].item<double>();
      worst = std::max(worst, std::abs(fd - ad) / std::max(1.0, std::abs(fd)));
    }
  }
  INFO(name << (dense_features ? " (dense features)" : "") << " worst relative gradient error "
            << worst);
  CHECK(worst < 1e-6);
}

}  // namespace

TEST_CASE("GCN gradients match finite differences (float64)") { check_gradients("gcn", false); }
TEST_CASE("GAT gradients match finite differences (float64)") { check_gradients("gat", false); }
TEST_CASE("GIN gradients match finite differences (float64)") { check_gradients("gin", false); }
TEST_CASE("GraphSAGE gradients match finite differences (float64)") {
  check_gradients("sage", false);
}
TEST_CASE("gradients match finite differences with dense features too (float64)") {
  check_gradients("gcn", false, /*dense_features=*/true);
  check_gradients("gat", false, /*dense_features=*/true);
  check_gradients("gin", true, /*dense_features=*/true);
}
TEST_CASE("edge-mask gradients match finite differences for every model (float64)") {
  check_gradients("gcn", true);
  check_gradients("gat", true);
  check_gradients("gin", true);
  check_gradients("sage", true);
}

TEST_CASE(
    "GraphSAGE equals mean_N(X)·Wl + X·Wr with a dense mean over the kept neighbours (a raw self "
    "loop one of them, an isolated node 0), edge-masked messages over the unmasked count") {
  const teddy::Graph graph = teddy::test::tiny_graph();
  // Edge ids in input order: 5 = {5,6} and 6 = {0,6} dropped leave node 6 without neighbours.
  const std::vector<std::uint8_t> keep = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1};
  const teddy::GraphTensors g = teddy::make_graph_tensors(graph, &keep).to(torch::kFloat64);
  torch::manual_seed(3);
  teddy::GnnOptions o;
  o.hidden = 6;
  o.dropout = 0.5;  // eval mode: no dropout
  auto model = teddy::make_gnn_model("sage", g.num_features, g.num_classes, o);
  model->to(torch::kFloat64);
  model->eval();
  const at::Tensor mask =
      torch::rand({static_cast<std::int64_t>(graph.num_edges())}, torch::kFloat64);
  // The dense reference: masked adjacency over the kept edges, divided by the kept count.
  at::Tensor a = torch::zeros({7, 7}, torch::kFloat64);
  at::Tensor count = torch::zeros({7, 1}, torch::kFloat64);
  for (std::size_t e = 0; e < graph.num_edges(); ++e) {
    if (!keep[e]) continue;
    const teddy::Edge& edge = graph.edges[e];
    const double m = mask[static_cast<std::int64_t>(e)].item<double>();
    a[edge.dst][edge.src] = m;
    a[edge.src][edge.dst] = m;
    count[edge.dst] += 1;
    if (edge.src != edge.dst) count[edge.src] += 1;
  }
  const at::Tensor mean = a / count.clamp_min(1.0);
  const at::Tensor x = g.dense_features();
  const auto w = model->weight_matrices();  // Wl1, Wr1, Wl2, Wr2
  const at::Tensor h1 = torch::relu(mean.mm(x).mm(w[0]) + x.mm(w[1]));
  const at::Tensor want = mean.mm(h1).mm(w[2]) + h1.mm(w[3]);
  torch::NoGradGuard no_grad;
  const at::Tensor got = model->forward(g, mask);
  CHECK(count[6].item<double>() == 0);
  CHECK(count[3].item<double>() == 3);  // neighbours 2, 4 and itself
  INFO("got " << got << " want " << want);
  CHECK(torch::allclose(got, want, /*rtol=*/1e-6, /*atol=*/1e-9));  // mean_norm is float32
}

TEST_CASE(
    "GCN's training pass after an eval pass (cached first layer) equals a fresh pass in logits and "
    "W1 gradient, and a changed W1 is not served from the cache") {
  const teddy::Graph graph = teddy::test::tiny_graph();
  teddy::GraphTensors g = teddy::make_graph_tensors(graph, nullptr).to(torch::kFloat64);
  g.x_dense = at::Tensor();  // the CSR path, as on Cora
  torch::manual_seed(5);
  teddy::GnnOptions o;
  o.hidden = 6;
  o.dropout = 0;
  auto model = teddy::make_gnn_model("gcn", g.num_features, g.num_classes, o);
  model->to(torch::kFloat64);
  at::Tensor w1 = model->named_parameters()["w1"];
  const at::Tensor r = torch::randn({g.num_nodes, g.num_classes}, torch::kFloat64);
  auto train_pass = [&](at::Tensor* grad) {
    model->train();
    if (w1.grad().defined()) w1.mutable_grad().zero_();
    const at::Tensor logits = model->forward(g, {});
    (logits * r).sum().backward();
    *grad = w1.grad().clone();
    return logits.detach();
  };
  auto eval_pass = [&] {
    model->eval();
    torch::NoGradGuard no_grad;
    model->forward(g, {});
  };
  at::Tensor fresh_grad, cached_grad;
  const at::Tensor fresh = train_pass(&fresh_grad);  // no eval before: computed
  eval_pass();
  const at::Tensor cached = train_pass(&cached_grad);  // taken from the eval pass
  CHECK(torch::allclose(cached, fresh, /*rtol=*/1e-12, /*atol=*/1e-12));
  CHECK(torch::allclose(cached_grad, fresh_grad, /*rtol=*/1e-12, /*atol=*/1e-12));
  eval_pass();
  {
    torch::NoGradGuard no_grad;
    w1.mul_(2.0);  // an in-place change (as an optimizer step) after the eval pass
  }
  at::Tensor after_grad, recomputed_grad;
  const at::Tensor after = train_pass(&after_grad);
  const at::Tensor recomputed = train_pass(&recomputed_grad);  // nothing cached: computed
  CHECK_FALSE(torch::allclose(after, cached));
  CHECK(torch::allclose(after, recomputed, /*rtol=*/1e-12, /*atol=*/1e-12));
  CHECK(torch::allclose(after_grad, recomputed_grad, /*rtol=*/1e-12, /*atol=*/1e-12));
}

TEST_CASE("models have no biases and the expected weight shapes") {
  teddy::GnnOptions o;
  auto gcn = teddy::make_gnn_model("gcn", 10, 3, o);
  CHECK(gcn->parameters().size() == 2);
  CHECK(gcn->weight_matrices()[0].sizes() == at::IntArrayRef({10, 512}));
  auto gat = teddy::make_gnn_model("gat", 10, 3, o);
  CHECK(gat->weight_matrices()[0].sizes() == at::IntArrayRef({10, 64}));
  CHECK(gat->parameters().size() == 6);  // 2 weights + 4 attention vectors
  auto gin = teddy::make_gnn_model("gin", 10, 3, o);
  CHECK(gin->parameters().size() == 5);  // 3 weights + 2 ε
  auto sage = teddy::make_gnn_model("sage", 10, 3, o);
  CHECK(sage->parameters().size() == 4);  // lin_l and lin_r of both layers
  CHECK(sage->weight_matrices()[1].sizes() == at::IntArrayRef({10, 512}));
  CHECK(sage->weight_matrices()[3].sizes() == at::IntArrayRef({512, 3}));
}
