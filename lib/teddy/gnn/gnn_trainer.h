// Full-batch node-classification training, as the official TEDDY code does it: Adam (lr 0.01,
// weight decay 5e-4), a fixed number of epochs, no early stop; after every step an evaluation in
// eval mode under NoGradGuard, and the reported figures are those of the best-validation epoch
// (ties → the later epoch). Optional per step: TEDDY's l0 projection, fixed 0/1 weight masks
// (random and UGS tickets), the distillation term, and extra loss terms/parameters (UGS masks).
// Not a mini-batch trainer.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <vector>

#include "teddy/gnn/gnn_model.h"
#include "teddy/gnn/graph_tensors.h"
#include "teddy/gnn/weight_projection.h"

namespace sparsetrain::teddy {

struct TrainOptions {
  int epochs = 200;
  double lr = 0.01;
  double weight_decay = 5e-4;

  // l0 projection onto ||θ||_0 <= (1 − s)·n over `projection` after every step (s > 0).
  double weight_sparsity = 0;
  ProjectionSet projection = ProjectionSet::kAll;
  // Fixed 0/1 masks over projection_parameters(model, projection), applied at the start and after
  // every step; empty = none.
  std::vector<at::Tensor> fixed_masks;

  // Distillation: loss += kd_lambda · distillation_loss(student, teacher_logits, T).
  at::Tensor teacher_logits;  // [N, classes] or undefined
  double kd_lambda = 0;
  double kd_temperature = 1;

  // UGS / WD-GLT mask search: an edge mask passed to forward, extra trained tensors, an extra
  // loss term (of the step's training-mode logits, [N, classes]), a hook after each step, and one
  // called when a new best-validation epoch is taken.
  at::Tensor edge_mask;
  std::vector<at::Tensor> extra_parameters;
  std::function<at::Tensor(const at::Tensor& logits)> extra_loss;
  std::function<void()> after_step;
  std::function<void()> on_best;
};

// CPU seconds of the calling thread per phase of the loop, summed over epochs (with more than
// one intra-op thread the other threads' work is not counted: measure with OMP_NUM_THREADS=1).
struct TrainPhases {
  double forward = 0;   // training forward + loss
  double backward = 0;  // loss.backward()
  double step = 0;      // optimizer step, projection / fixed masks, after_step hook
  double eval = 0;      // eval-mode forward, accuracies, best-epoch bookkeeping
  TrainPhases& operator+=(const TrainPhases& o) {
    forward += o.forward;
    backward += o.backward;
    step += o.step;
    eval += o.eval;
    return *this;
  }
};

struct TrainResult {
  int best_epoch = -1;                                               // 0-based
  double train_accuracy = 0, valid_accuracy = 0, test_accuracy = 0;  // at the best epoch
  at::Tensor best_logits;      // [N, classes] eval-mode logits at the best epoch (the KD teacher)
  double weight_sparsity = 0;  // zero fraction of the projection set at the best epoch
  double seconds = 0;          // wall time of the whole training (incl. evaluation)
  double final_loss = 0;
  TrainPhases phases;
};

TrainResult train_node_classifier(GnnModelImpl& model, const GraphTensors& graph,
                                  const TrainOptions& options);

// Fraction of `idx` whose argmax of logits equals the label.
double accuracy(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& idx);

}  // namespace sparsetrain::teddy
