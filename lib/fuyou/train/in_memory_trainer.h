// The in-memory trainer behind `sparsetrain fuyou finetune`: every weight, gradient and Adam state
// in RAM (or GPU memory for the compute copy), block-wise recompute from gpt_model.h, gradient
// accumulation, global-norm clipping, and the fused CPU AdamW (cpu_adam.h) for the update.
//  - CPU: fp32 compute; the fp32 master weights are the compute weights.
//  - CUDA: bf16 compute weights on the GPU, fp32 gradient accumulators on the GPU; at each step
//    the gradients go to the CPU, the fused AdamW updates the fp32 master and m, v there and writes
//    bf16 weights in the same pass, which are copied back to the GPU (Fuyou's division of labour,
//    without the SSD: that is the offloaded trainer's job).
// Not the offloaded trainer: nothing here streams from SSDs or overlaps phases.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/model/token_data.h"
#include "fuyou/train/data_parallel.h"
#include "fuyou/train/train_options.h"

namespace sparsetrain::fuyou {

class InMemoryTrainer {
 public:
  // initial: fp32 CPU weights for `config` (from init_model_weights or a checkpoint); taken over as
  // the master copy. Throws UsageError for inconsistent options, EnvironmentError for CUDA without
  // a device. `ranks`: this process's data-parallel group (data_parallel.h; options.ranks and
  // .rank must match it), or none.
  InMemoryTrainer(ModelConfig config, ModelWeights initial, TrainOptions options,
                  std::shared_ptr<RankReduction> ranks = nullptr);

  // Runs options.steps steps; calls on_step after each. Throws RunError on a non-finite loss.
  TrainResult train(const TokenData& train_data, const TokenData& valid_data,
                    const std::function<void(const StepReport&)>& on_step = {});

  // The fp32 master weights on the CPU (the trained model).
  const ModelWeights& master() const { return master_; }
  // Learning rate at 1-based `step` (warm-up, then cosine).
  double lr_at(std::int64_t step) const;

 private:
  double evaluate(const TokenData& valid_data);
  void optimizer_step(std::int64_t step, double lr);

  ModelConfig config_;
  TrainOptions options_;
  ModelWeights master_;           // fp32 CPU
  ModelWeights m_, v_;            // fp32 CPU Adam moments
  ModelWeights compute_;          // CPU: aliases master_; CUDA: bf16 on the GPU
  ModelWeights grads_;            // fp32 accumulators beside compute_
  ModelWeights grads_cpu_;        // CUDA only: fp32 CPU staging for the optimizer
  ModelWeights staged_;           // CUDA only: bf16 CPU weights written by the optimizer
  at::Tensor embedding_scratch_;  // K > 1: micro-batch k > 0's wte gradient (gpt_model.h)
  std::shared_ptr<RankReduction> ranks_;
};

}  // namespace sparsetrain::fuyou
