// The training options, schedule, weight-decay rule and validation stream that the in-memory
// trainer (in_memory_trainer.h) and the offloaded trainer (offload/offload_trainer.h) share, so
// that both train the same run: TrainOptions, the per-step report, the run's result.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/timer.h"
#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/model/token_data.h"
#include "fuyou/optim/cpu_adam.h"

namespace sparsetrain::fuyou {

class RankReduction;  // data_parallel.h

enum class TrainDevice { kCpu, kCuda };

struct TrainOptions {
  std::int64_t steps = 200;      // optimizer steps
  std::int64_t micro_batch = 8;  // B: sequences per forward/backward
  std::int64_t seq = 128;        // T: tokens per sequence
  std::int64_t accum = 1;        // K: micro-batches per optimizer step (per rank)
  // Data parallel (data_parallel.h): R ranks, this one r; a step is R·K micro-batches, rank r
  // running r·K … r·K + K - 1 of them.
  std::int64_t ranks = 1;
  std::int64_t rank = 0;
  double lr = 1e-3;           // peak learning rate
  std::int64_t warmup = 0;    // steps of linear warm-up to lr
  double min_lr_ratio = 0.1;  // cosine decay from lr to lr·min_lr_ratio at the last step
  AdamWOptions adam{1e-3, 0.9, 0.95, 1e-8, 0.1};  // lr is overwritten per step by the schedule
  double grad_clip = 1.0;                         // global L2 norm; 0 = off
  // Validation every N steps (and after the last); 0 = only at the end.
  std::int64_t eval_every = 50;
  std::int64_t eval_batches = 4;  // validation micro-batches per evaluation
  std::uint64_t seed = 0;         // data order (model init is the caller's)
  TrainDevice device = TrainDevice::kCpu;
  std::int64_t loss_chunk_rows = 0;  // 0 = default_loss_chunk_rows
  CpuIsa isa = CpuIsa::kAuto;
};

struct StepReport {
  std::int64_t step = 0;  // 1-based
  double loss = 0;        // mean training loss over the step's K micro-batches
  double lr = 0;
  double grad_norm = 0;     // before clipping
  double tokens_per_s = 0;  // training tokens / training seconds so far (evaluation excluded)
  double tflops = 0;        // tokens_per_s · train_flops_per_token(T) / 1e12
  std::optional<double> val_loss;  // set on evaluation steps
};

struct TrainResult {
  std::vector<double> losses;  // per step
  std::vector<std::pair<std::int64_t, double>>
      val_losses;            // (step, loss); step 0 = before training
  std::int64_t tokens = 0;   // training tokens processed
  double train_seconds = 0;  // data + forward/backward + optimizer
  double tokens_per_s = 0;
  double tflops = 0;            // model FLOPs: 6·N + 12·L·C·T per token (ModelConfig)
  double tflops_recompute = 0;  // hardware FLOPs with block recompute: 8·N + 16·L·C·T per token
  common::PhaseTimes phases;    // "data", "forward_backward", "optimizer", "eval" (seconds)
};

// Shared by the in-memory and the offloaded trainer (offload_trainer.h), so both follow one
// schedule, one weight-decay rule and one validation stream.
// Throws UsageError for inconsistent options (non-positive sizes, --seq beyond the model, ...).
void check_train_options(const ModelConfig& config, const TrainOptions& options);
// Learning rate at 1-based `step`: linear warm-up, then cosine decay to lr·min_lr_ratio.
double lr_at_step(const TrainOptions& options, std::int64_t step);
// AdamW options for the tensor with canonical name `name` at learning rate `lr` (weight decay only
// where weight_decays(name)).
AdamWOptions adam_options_for(const TrainOptions& options, const std::string& name, double lr);
// Micro-batch i (tokens, targets) of the validation stream evaluate_loss averages over.
std::pair<at::Tensor, at::Tensor> validation_batch(const TokenData& valid_data,
                                                   const TrainOptions& options, std::int64_t i);
// Mean validation loss over options.eval_batches micro-batches of the validation stream.
double evaluate_loss(const ModelConfig& config, const ModelWeights& weights,
                     const TokenData& valid_data, const TrainOptions& options);

// Micro-batch k (0-based, of this rank's K) of 1-based `step` in the training stream: the step's
// micro-batch rank·K + k of ranks·K; (tokens, targets) [B, T].
std::pair<at::Tensor, at::Tensor> training_batch(const TokenData& train_data,
                                                 const TrainOptions& options, std::int64_t step,
                                                 std::int64_t k);
// RunError naming the step when the step's mean loss is not finite; `hint` says how to go on.
void check_loss_finite(double loss, std::int64_t step, const char* hint);
// Whether step `step` ends with a validation (every eval_every steps, and the last).
bool is_eval_step(const TrainOptions& options, std::int64_t step);
// After a step that took `seconds` (evaluation excluded): the run's totals and the report's rates.
void record_step(TrainResult& result, StepReport& report, double seconds, const ModelConfig& config,
                 const TrainOptions& options);
// At the end of a run: its rates from its totals.
void finish_train_result(TrainResult& result, const ModelConfig& config,
                         const TrainOptions& options);
// UsageError unless options.ranks and .rank are those of `ranks` (none: one rank).
void check_rank_options(const TrainOptions& options, const RankReduction* ranks);
// The micro-batches of one step over every rank: R·K; a micro-batch's gradient scale is 1 / it.
std::int64_t step_micro_batches(const TrainOptions& options);

}  // namespace sparsetrain::fuyou
