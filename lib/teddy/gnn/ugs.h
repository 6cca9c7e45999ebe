// UGS, Unified GNN Sparsification (Chen et al., "A Unified Lottery Ticket Hypothesis for Graph
// Neural Networks", ICML 2021): the iterative baseline of `teddy run --method ugs`, and the rounds
// WD-GLT (wd_glt.h, `--method wdglt`) shares with it. One round:
//   1. mask search: from the rewound init, on the current ticket, train learnable masks on the
//      edges (one per undirected edge: both directions share it) and on the weight matrices, with
//      the objective's extra loss — UGS: L1 penalties s1 · |edge mask|_1 + s2 · Σ |weight mask|_1
//      (pruned weights stay pruned);
//   2. prune the lowest |mask| (of the best-validation epoch) down to the round's level: edges to
//      the graph sparsity (self loops never), weights to the weight sparsity;
//   3. rewind to the init and retrain with the fixed masks: the round's ticket.
// Levels ascend from round to round (each prunes further than the last). The levels, seeds and
// the report are ticket_search.h's; this is the rounds only. Trains, writes nothing.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "teddy/gnn/gnn_model.h"
#include "teddy/gnn/gnn_trainer.h"
#include "teddy/gnn/graph_tensors.h"
#include "teddy/graph/graph.h"

namespace sparsetrain::teddy {

// What the mask search adds to the cross-entropy, and does after each step: UGS's L1 penalties
// (l1_mask_objective) or WD-GLT's Wasserstein term (wd_glt.h). The one difference between the two
// methods; everything else in a round is shared.
class MaskSearchObjective {
 public:
  virtual ~MaskSearchObjective() = default;
  // The extra loss of one training step. logits: [N, classes] of its (training-mode) forward.
  virtual at::Tensor loss(const at::Tensor& logits, const at::Tensor& edge_mask,
                          const std::vector<at::Tensor>& weight_masks) const = 0;
  // After each optimizer step, under NoGradGuard (WD-GLT clamps the edge mask to [0, 1]).
  virtual void after_step(at::Tensor& /*edge_mask*/) const {}
};

// UGS: s1 · Σ |edge mask| + s2 · Σ_matrices Σ |weight mask|.
std::shared_ptr<const MaskSearchObjective> l1_mask_objective(double s1, double s2);

struct UgsOptions {
  std::shared_ptr<const MaskSearchObjective> objective;  // null: l1_mask_objective(1e-2, 1e-2)
  TrainOptions train;  // epochs, lr, weight decay of both trainings (sparsity, KD fields unused)
  std::string split = "public";
};

// How the pruner trains: train_node_classifier, or a wrapper that also counts (ticket_search).
using UgsTrainFn =
    std::function<TrainResult(GnnModelImpl&, const GraphTensors&, const TrainOptions&)>;

class UgsPruner {
 public:
  // `model` is freshly initialised: its parameters are the rewind target. The ticket starts as
  // the whole graph and dense weights. `seed` seeds the masks' initial noise.
  UgsPruner(const Graph& graph, std::shared_ptr<GnnModelImpl> model, UgsOptions options,
            std::uint64_t seed);

  // Step 1 of round `round` (0-based): one training.
  void search_masks(std::size_t round, const UgsTrainFn& train);
  // Step 2: prunes the ticket to `graph_sparsity` of the undirected edges and `weight_sparsity`
  // of the weight matrices' entries, by the masks search_masks found.
  void prune_to(double graph_sparsity, double weight_sparsity);
  // Step 3: one training of the rewound model on ticket() with the fixed weight masks.
  TrainResult retrain(const UgsTrainFn& train);

  const std::vector<std::uint8_t>& keep() const { return keep_; }  // [edges] 1 = in the ticket
  const GraphTensors& ticket() const { return ticket_; }  // the ticket's graph, after retrain()
  GnnModelImpl& model() { return *model_; }

 private:
  void rewind();

  const Graph& graph_;
  std::shared_ptr<GnnModelImpl> model_;
  UgsOptions options_;
  std::uint64_t seed_;
  std::vector<at::Tensor> init_;    // rewind target, one per model parameter
  std::vector<std::uint8_t> keep_;  // [edges]
  std::vector<at::Tensor> binary_;  // fixed 0/1 masks, one per weight matrix
  at::Tensor best_edge_mask_;       // [edges] at search_masks' best-validation epoch
  std::vector<at::Tensor> best_weight_masks_;
  GraphTensors ticket_;
};

}  // namespace sparsetrain::teddy
