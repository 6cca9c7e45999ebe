// The training options both trainers share (see train_options.h).
#include "fuyou/train/train_options.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/train/data_parallel.h"

namespace sparsetrain::fuyou {

namespace {

// Validation batches come from their own stream so that changing --steps never changes them.
constexpr std::uint64_t kValidSeedSalt = 0x5eed0f7a11da7aULL;

}  // namespace

void check_train_options(const ModelConfig& config, const TrainOptions& o) {
  auto positive = [](const char* flag, std::int64_t value) {
    if (value <= 0) {
      throw common::UsageError(
          std::string(flag) + " must be positive, got " + std::to_string(value),
          "see sparsetrain fuyou finetune --help");
    }
  };
  positive("--steps", o.steps);
  positive("--micro-batch", o.micro_batch);
  positive("--seq", o.seq);
  positive("--accum", o.accum);
  positive("--eval-batches", o.eval_batches);
  if (o.ranks < 1 || o.rank < 0 || o.rank >= o.ranks) {
    throw common::UsageError(
        "rank " + std::to_string(o.rank) + " of a world of " + std::to_string(o.ranks) + " ranks",
        "set RANK in [0, WORLD_SIZE)");
  }
  if (o.seq > config.n_positions) {
    throw common::UsageError("--seq " + std::to_string(o.seq) + " exceeds model '" + config.name +
                                 "' positions (" + std::to_string(config.n_positions) + ")",
                             "lower --seq or pick a model with a longer context");
  }
  if (!(o.lr > 0) || !std::isfinite(o.lr)) {
    throw common::UsageError("--lr must be a positive number", "try --lr 1e-3");
  }
  if (o.warmup < 0 || o.eval_every < 0 || o.grad_clip < 0 || o.min_lr_ratio < 0 ||
      o.min_lr_ratio > 1) {
    throw common::UsageError(
        "--warmup, --eval-every and --grad-clip must be >= 0 and "
        "--min-lr-ratio in [0, 1]",
        "see sparsetrain fuyou finetune --help");
  }
}

double lr_at_step(const TrainOptions& options, std::int64_t step) {
  const double peak = options.lr;
  if (step <= options.warmup)
    return peak * static_cast<double>(step) / static_cast<double>(options.warmup + 1);
  const double span =
      static_cast<double>(std::max<std::int64_t>(1, options.steps - options.warmup));
  const double progress = std::min(1.0, static_cast<double>(step - options.warmup) / span);
  const double floor = peak * options.min_lr_ratio;
  return floor + 0.5 * (peak - floor) * (1.0 + std::cos(M_PI * progress));
}

AdamWOptions adam_options_for(const TrainOptions& options, const std::string& name, double lr) {
  AdamWOptions adam = options.adam;
  adam.lr = lr;
  if (!weight_decays(name)) adam.weight_decay = 0.0;
  return adam;
}

std::pair<at::Tensor, at::Tensor> validation_batch(const TokenData& valid_data,
                                                   const TrainOptions& options, std::int64_t i) {
  return valid_data.batch(options.seed ^ kValidSeedSalt, i, options.micro_batch, options.seq);
}

double evaluate_loss(const ModelConfig& config, const ModelWeights& weights,
                     const TokenData& valid_data, const TrainOptions& options) {
  double sum = 0;
  for (std::int64_t i = 0; i < options.eval_batches; ++i) {
    auto [x, y] = validation_batch(valid_data, options, i);
    sum += gpt_loss(config, weights, x, y, options.loss_chunk_rows);
  }
  return sum / static_cast<double>(options.eval_batches);
}

std::pair<at::Tensor, at::Tensor> training_batch(const TokenData& train_data,
                                                 const TrainOptions& options, std::int64_t step,
                                                 std::int64_t k) {
  const std::int64_t per_step = step_micro_batches(options);
  return train_data.batch(options.seed, (step - 1) * per_step + options.rank * options.accum + k,
                          options.micro_batch, options.seq);
}

void check_loss_finite(double loss, std::int64_t step, const char* hint) {
  if (!std::isfinite(loss)) {
    throw common::RunError(
        "training loss became " + std::to_string(loss) + " at step " + std::to_string(step), hint);
  }
}

bool is_eval_step(const TrainOptions& options, std::int64_t step) {
  return step == options.steps || (options.eval_every > 0 && step % options.eval_every == 0);
}

void record_step(TrainResult& result, StepReport& report, double seconds, const ModelConfig& config,
                 const TrainOptions& options) {
  result.train_seconds += seconds;
  result.tokens += options.micro_batch * options.seq * step_micro_batches(options);  // all ranks'
  result.losses.push_back(report.loss);
  report.tokens_per_s = static_cast<double>(result.tokens) / result.train_seconds;
  report.tflops = report.tokens_per_s * config.train_flops_per_token(options.seq) / 1e12;
}

void check_rank_options(const TrainOptions& options, const RankReduction* ranks) {
  const std::int64_t size = ranks ? ranks->size() : 1, rank = ranks ? ranks->rank() : 0;
  if (options.ranks != size || options.rank != rank) {
    throw common::UsageError("the training options name rank " + std::to_string(options.rank) +
                                 " of " + std::to_string(options.ranks) + ", the group rank " +
                                 std::to_string(rank) + " of " + std::to_string(size),
                             "set TrainOptions::ranks and ::rank from the rank group");
  }
}

std::int64_t step_micro_batches(const TrainOptions& options) {
  return options.ranks * options.accum;
}

void finish_train_result(TrainResult& result, const ModelConfig& config,
                         const TrainOptions& options) {
  result.tokens_per_s = static_cast<double>(result.tokens) / std::max(result.train_seconds, 1e-9);
  result.tflops = result.tokens_per_s * config.train_flops_per_token(options.seq) / 1e12;
  result.tflops_recompute =
      result.tokens_per_s * config.train_flops_per_token_recompute(options.seq) / 1e12;
}

}  // namespace sparsetrain::fuyou
