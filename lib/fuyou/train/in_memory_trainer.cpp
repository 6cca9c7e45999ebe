// InMemoryTrainer (see in_memory_trainer.h).
#include "fuyou/train/in_memory_trainer.h"

#include <torch/torch.h>

#include <cmath>

#include "common/error.h"
#include "common/log.h"
#include "fuyou/model/gpt_model.h"

namespace sparsetrain::fuyou {

namespace {

// Every tensor of `w` in named() order.
std::vector<at::Tensor*> tensors_of(ModelWeights& w) {
  std::vector<at::Tensor*> out;
  for (auto& [name, t] : w.named()) out.push_back(t);
  return out;
}

}  // namespace

InMemoryTrainer::InMemoryTrainer(ModelConfig config, ModelWeights initial, TrainOptions options,
                                 std::shared_ptr<RankReduction> ranks)
    : config_(std::move(config)),
      options_(options),
      master_(std::move(initial)),
      ranks_(std::move(ranks)) {
  config_.validate();
  check_train_options(config_, options_);
  check_rank_options(options_, ranks_.get());
  check_weight_shapes(config_, master_);
  const auto cpu32 = at::TensorOptions().dtype(at::kFloat).device(at::kCPU);
  for (auto& [name, t] : master_.named()) *t = t->to(cpu32).contiguous();
  m_ = zeros_like_weights(master_, cpu32);
  v_ = zeros_like_weights(master_, cpu32);
  if (options_.device == TrainDevice::kCuda) {
    if (!torch::cuda::is_available()) {
      throw common::EnvironmentError("--device cuda: no CUDA device is visible",
                                     "run on a GPU machine or pass --device cpu");
    }
    const auto gpu16 = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
    compute_ = weights_to(master_, gpu16);
    grads_ = zeros_like_weights(master_, gpu16.dtype(at::kFloat));
    grads_cpu_ = zeros_like_weights(master_, cpu32);
    staged_ = zeros_like_weights(master_, cpu32.dtype(at::kBFloat16));
  } else {
    compute_ = master_;  // shares storage: AdamW updates the compute weights in place
    grads_ = zeros_like_weights(master_, cpu32);
  }
  if (options_.accum > 1) embedding_scratch_ = at::empty_like(grads_.wte);
}

double InMemoryTrainer::lr_at(std::int64_t step) const { return lr_at_step(options_, step); }

double InMemoryTrainer::evaluate(const TokenData& valid_data) {
  return evaluate_loss(config_, compute_, valid_data, options_);
}

void InMemoryTrainer::optimizer_step(std::int64_t step, double lr) {
  const bool cuda = options_.device == TrainDevice::kCuda;
  auto names = master_.named();
  auto masters = tensors_of(master_);
  auto ms = tensors_of(m_);
  auto vs = tensors_of(v_);
  auto grads = tensors_of(cuda ? grads_cpu_ : grads_);
  auto gpu_grads = tensors_of(grads_);
  auto staged = tensors_of(staged_);
  auto compute = tensors_of(compute_);
  for (std::size_t i = 0; i < masters.size(); ++i) {
    const AdamWOptions adam = adam_options_for(options_, names[i].first, lr);
    if (cuda) grads[i]->copy_(*gpu_grads[i]);
    adamw_step(adam, step, *masters[i], *ms[i], *vs[i], *grads[i], cuda ? staged[i] : nullptr,
               options_.isa);
    if (cuda) compute[i]->copy_(*staged[i]);
  }
}

TrainResult InMemoryTrainer::train(const TokenData& train_data, const TokenData& valid_data,
                                   const std::function<void(const StepReport&)>& on_step) {
  TrainResult result;
  auto eval_scope = [&] {
    auto t = result.phases.scope("eval");
    return evaluate(valid_data);
  };
  result.val_losses.emplace_back(0, eval_scope());
  auto all_grads = tensors_of(grads_);
  for (std::int64_t step = 1; step <= options_.steps; ++step) {
    common::check_interrupt();
    common::Timer step_timer;
    for (at::Tensor* g : all_grads) g->zero_();
    double loss_sum = 0;
    for (std::int64_t k = 0; k < options_.accum; ++k) {
      at::Tensor x, y;
      {
        auto t = result.phases.scope("data");
        std::tie(x, y) = training_batch(train_data, options_, step, k);
      }
      auto t = result.phases.scope("forward_backward");
      loss_sum += gpt_forward_backward(
          config_, compute_, x, y, 1.0 / static_cast<double>(step_micro_batches(options_)), grads_,
          options_.loss_chunk_rows, k > 0 ? &embedding_scratch_ : nullptr);
    }
    if (ranks_) {  // the step's sums over every rank's micro-batches
      auto t = result.phases.scope("rank_sum");
      loss_sum = ranks_->sum(loss_sum);
      std::vector<at::Tensor> grads;
      for (at::Tensor* g : all_grads) grads.push_back(*g);
      ranks_->sum(grads);
    }
    StepReport report;
    report.step = step;
    report.loss = loss_sum / static_cast<double>(step_micro_batches(options_));
    check_loss_finite(report.loss, step, "lower --lr or raise --warmup");
    report.lr = lr_at(step);
    {
      auto t = result.phases.scope("optimizer");
      at::Tensor sq = at::zeros({}, all_grads[0]->options().dtype(at::kDouble));
      for (at::Tensor* g : all_grads) sq += g->pow(2).sum().to(at::kDouble);
      report.grad_norm = std::sqrt(sq.item<double>());
      if (options_.grad_clip > 0 && report.grad_norm > options_.grad_clip) {
        const double scale = options_.grad_clip / (report.grad_norm + 1e-6);
        for (at::Tensor* g : all_grads) g->mul_(scale);
      }
      optimizer_step(step, report.lr);
    }
    record_step(result, report, step_timer.seconds(), config_, options_);
    if (is_eval_step(options_, step)) {
      report.val_loss = eval_scope();
      result.val_losses.emplace_back(step, *report.val_loss);
    }
    if (on_step) on_step(report);
  }
  finish_train_result(result, config_, options_);
  return result;
}

}  // namespace sparsetrain::fuyou
