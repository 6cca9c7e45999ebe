// UGS rounds: mask search, pruning by |mask|, rewind and retraining (see ugs.h).
#include "teddy/gnn/ugs.h"

#include <torch/torch.h>

#include <limits>

#include "teddy/gnn/weight_projection.h"
#include "teddy/prune/edge_selection.h"

namespace sparsetrain::teddy {

namespace {

class L1MaskObjective : public MaskSearchObjective {
 public:
  L1MaskObjective(double s1, double s2) : s1_(s1), s2_(s2) {}
  at::Tensor loss(const at::Tensor& /*logits*/, const at::Tensor& edge_mask,
                  const std::vector<at::Tensor>& weight_masks) const override {
    at::Tensor l1 = s1_ * edge_mask.abs().sum();
    for (const at::Tensor& w : weight_masks) l1 = l1 + s2_ * w.abs().sum();
    return l1;
  }

 private:
  double s1_, s2_;
};

}  // namespace

std::shared_ptr<const MaskSearchObjective> l1_mask_objective(double s1, double s2) {
  return std::make_shared<L1MaskObjective>(s1, s2);
}

UgsPruner::UgsPruner(const Graph& graph, std::shared_ptr<GnnModelImpl> model, UgsOptions options,
                     std::uint64_t seed)
    : graph_(graph),
      model_(std::move(model)),
      options_(std::move(options)),
      seed_(seed),
      keep_(graph.num_edges(), 1) {
  if (!options_.objective) options_.objective = l1_mask_objective(1e-2, 1e-2);
  for (const at::Tensor& p : model_->parameters()) init_.push_back(p.detach().clone());
  for (const at::Tensor& w : model_->weight_matrices()) binary_.push_back(torch::ones_like(w));
}

void UgsPruner::rewind() {
  torch::NoGradGuard no_grad;
  const auto params = model_->parameters();
  for (std::size_t j = 0; j < params.size(); ++j) params[j].copy_(init_[j]);
}

void UgsPruner::search_masks(std::size_t round, const UgsTrainFn& train) {
  rewind();
  const GraphTensors g = make_graph_tensors(graph_, &keep_, options_.split);
  // Masks start at 1 plus ±1e-5 seeded noise, as the official UGS code: edges and weights that
  // only feel the L1 term otherwise move in lockstep and tie, and the tie-break (edge id) would
  // prune low-numbered nodes' edges first.
  at::Generator gen = at::detail::createCPUGenerator(seed_ * 1000003ULL + round);
  auto noisy_ones = [&](const at::Tensor& like) {
    return 1.0 + (2.0 * torch::rand(like.sizes(), gen, like.options()) - 1.0) * 1e-5;
  };
  const auto m = static_cast<std::int64_t>(graph_.num_edges());
  at::Tensor edge_mask = noisy_ones(torch::empty({m})).requires_grad_(true);
  std::vector<at::Tensor> weight_masks;
  for (const at::Tensor& b : binary_)
    weight_masks.push_back((b * noisy_ones(b)).requires_grad_(true));
  model_->weight_masks = weight_masks;
  best_edge_mask_ = edge_mask.detach().clone();
  best_weight_masks_.clear();
  for (const at::Tensor& w : weight_masks) best_weight_masks_.push_back(w.detach().clone());
  TrainOptions search = options_.train;
  search.weight_sparsity = 0;
  search.teacher_logits = at::Tensor();
  search.edge_mask = edge_mask;
  search.extra_parameters = weight_masks;
  search.extra_parameters.push_back(edge_mask);
  search.extra_loss = [&](const at::Tensor& logits) {
    return options_.objective->loss(logits, edge_mask, weight_masks);
  };
  search.after_step = [&] {
    torch::NoGradGuard no_grad;
    options_.objective->after_step(edge_mask);
    for (std::size_t j = 0; j < binary_.size(); ++j) {
      weight_masks[j].mul_(binary_[j]);  // pruned weights stay pruned
    }
  };
  search.on_best = [&] {
    best_edge_mask_ = edge_mask.detach().clone();
    for (std::size_t j = 0; j < weight_masks.size(); ++j) {
      best_weight_masks_[j] = weight_masks[j].detach().clone();
    }
  };
  train(*model_, g, search);
  model_->weight_masks.clear();
}

void UgsPruner::prune_to(double graph_sparsity, double weight_sparsity) {
  // Already pruned entries score -1, so they stay pruned; self loops +inf, so they are never.
  std::vector<float> edge_scores(graph_.num_edges());
  const at::Tensor em = best_edge_mask_.abs().contiguous();
  const float* emp = em.data_ptr<float>();
  for (std::size_t e = 0; e < graph_.num_edges(); ++e) {
    const Edge& edge = graph_.edges[e];
    edge_scores[e] = edge.src == edge.dst ? std::numeric_limits<float>::infinity()
                     : keep_[e]           ? emp[e]
                                          : -1.0f;
  }
  keep_ = select_pruned_edges(edge_scores, {graph_sparsity}).keep_mask(0);
  std::vector<at::Tensor> weight_scores;
  for (std::size_t j = 0; j < binary_.size(); ++j) {
    weight_scores.push_back(torch::where(binary_[j] > 0, best_weight_masks_[j].abs(),
                                         torch::full_like(binary_[j], -1.0)));
  }
  binary_ = lowest_k_masks(weight_scores, zero_count(total_numel(binary_), weight_sparsity));
}

TrainResult UgsPruner::retrain(const UgsTrainFn& train) {
  rewind();
  ticket_ = make_graph_tensors(graph_, &keep_, options_.split);
  TrainOptions retrain = options_.train;
  retrain.weight_sparsity = 0;
  retrain.teacher_logits = at::Tensor();
  retrain.projection = ProjectionSet::kWeights;
  retrain.fixed_masks = binary_;
  return train(*model_, ticket_, retrain);
}

}  // namespace sparsetrain::teddy
