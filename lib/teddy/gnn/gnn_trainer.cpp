// The full-batch training loop (see gnn_trainer.h).
#include "teddy/gnn/gnn_trainer.h"

#include <torch/torch.h>

#include <ctime>

#include "common/error.h"
#include "common/timer.h"
#include "teddy/gnn/distillation_loss.h"

namespace sparsetrain::teddy {

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Adds the CPU seconds since the last call to `phase`.
class PhaseClock {
 public:
  void lap(double& phase) {
    const double now = thread_cpu_seconds();
    phase += now - last_;
    last_ = now;
  }

 private:
  double last_ = thread_cpu_seconds();
};

}  // namespace

double accuracy(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& idx) {
  torch::NoGradGuard no_grad;
  const at::Tensor pred = logits.index_select(0, idx).argmax(1);
  return pred.eq(labels.index_select(0, idx)).to(torch::kFloat64).mean().item<double>();
}

TrainResult train_node_classifier(GnnModelImpl& model, const GraphTensors& g,
                                  const TrainOptions& o) {
  common::Timer timer;
  std::vector<at::Tensor> params = model.parameters();
  for (const at::Tensor& t : o.extra_parameters) params.push_back(t);
  torch::optim::Adam optimizer(params,
                               torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  const std::vector<at::Tensor> projected = projection_parameters(model, o.projection);
  ST_ASSERT(o.fixed_masks.empty() || o.fixed_masks.size() == projected.size(),
            "one fixed mask per projected parameter");
  auto constrain = [&] {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < o.fixed_masks.size(); ++i) projected[i].mul_(o.fixed_masks[i]);
    if (o.weight_sparsity > 0) project_l0(projected, o.weight_sparsity);
  };
  constrain();

  const at::Tensor train_labels = g.labels.index_select(0, g.train_idx);
  TrainResult r;
  double best_valid = -1;
  PhaseClock clock;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    model.train();
    optimizer.zero_grad();
    const at::Tensor logits = model.forward(g, o.edge_mask);  // [N, classes]
    at::Tensor loss = torch::cross_entropy_loss(logits.index_select(0, g.train_idx), train_labels);
    if (o.teacher_logits.defined() && o.kd_lambda != 0) {
      loss = loss + o.kd_lambda * distillation_loss(logits, o.teacher_logits, o.kd_temperature);
    }
    if (o.extra_loss) loss = loss + o.extra_loss(logits);
    clock.lap(r.phases.forward);
    loss.backward();
    clock.lap(r.phases.backward);
    optimizer.step();
    constrain();
    if (o.after_step) o.after_step();
    r.final_loss = loss.item<double>();
    clock.lap(r.phases.step);

    model.eval();
    torch::NoGradGuard no_grad;
    const at::Tensor eval_logits = model.forward(g, o.edge_mask);
    const double valid = accuracy(eval_logits, g.labels, g.valid_idx);
    if (valid >= best_valid) {  // ties → the later epoch
      best_valid = valid;
      r.best_epoch = epoch;
      r.valid_accuracy = valid;
      r.train_accuracy = accuracy(eval_logits, g.labels, g.train_idx);
      r.test_accuracy = accuracy(eval_logits, g.labels, g.test_idx);
      r.best_logits = eval_logits;
      r.weight_sparsity = zero_fraction(projected);
      if (o.on_best) o.on_best();
    }
    clock.lap(r.phases.eval);
  }
  r.seconds = timer.seconds();
  return r;
}

}  // namespace sparsetrain::teddy
