// UGS, Unified GNN Sparsification (Chen et al., "A Unified Lottery Ticket Hypothesis for Graph
// Neural Networks", ICML 2021): the iterative baseline of `teddy run --method ugs`. One round:
//   1. mask search: from the rewound init, on the current ticket, train learnable masks on the
//      edges (one per undirected edge: both directions share it) and on the weight matrices, with
//      L1 penalties s1 · |edge mask|_1 + s2 · Σ |weight mask|_1 (pruned weights stay pruned);
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

struct UgsOptions {
  double s1 = 1e-2;    // L1 weight on the edge mask
  double s2 = 1e-2;    // L1 weight on the weight masks
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
