// OffloadTrainer: the offloaded trainer behind `sparsetrain fuyou finetune --ssd …` (Fuyou's
// pipeline). Same run as InMemoryTrainer (train/in_memory_trainer.h), bit for bit on the CPU tier:
// same data order, schedule, AdamW, clipping and validation; what differs is where things live.
//
// Owns: the plan (offload_plan.h), the SSD tensor store (the checkpoint: states, weights, step),
// the compute weights, and the placements its constructor chooses once from the plan
// (offload_internals.h):
//   states        StatePlacement     RAM (written through on commit steps) or the store alone
//                                    (copy-on-write, or in place with one store slot)
//   blocks        ComputeBlocks      resident in the compute tier, or streamed through a few slots
//   block inputs  BlockInputs        compute tier, the store (CPU tier), or pinned memory (CUDA)
//   block grads   BlockGradients     one buffer per block, a pool of two, or drained to the CPU
//                                    side (GradAccumulators: RAM or the store)
//   compute tier  ComputeTierLink    CPU (fp32, in place) or CUDA (bf16 GPU weights, pinned slots)
// train() runs the forward block by block and the backward in reverse with block-wise recompute
// (model/gpt_model.h); as soon as a unit's gradients are final it hands them to the optimizer
// thread (optimizer_stage.h), which has prefetched that unit's state pieces, runs the fused AdamW
// and writes them back, overlapped with the rest of the backward; with --grad-clip > 0 the updates
// wait for the global norm (exact by deferral). A step ends when every update and the commit are
// done, so the next forward sees exactly plain AdamW's weights.
// Invariants: the compute thread only computes and waits; every store call of a step happens on
// the optimizer thread (scripts/fuyou_compute_thread_io.sh checks it with strace) or on the
// placements' loader threads; a resumed run continues bit for bit from the last commit — or,
// with one store slot (updates in place, step_journal.h), from the step a crash interrupted
// mid-update, which it finishes first. The CUDA
// tier's transfers are not yet verified on a GPU (tests/fuyou/offload/offload_cuda_test.cpp has
// the checks).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/timer.h"
#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/model/token_data.h"
#include "fuyou/offload/offload_plan.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/train/train_options.h"

namespace sparsetrain::fuyou {

class RankReduction;
class StepGradients;
class TensorStore;
struct OffloadState;
struct SealJob;
struct SealedStep;

struct OffloadOptions {
  std::vector<std::string> ssd_dirs;  // the store's directories (striped)
  OffloadBudgets budgets;             // ssd_free_bytes is filled in from the directories
  OffloadRates rates;
  bool resume = false;  // continue the run committed in the store
  // States in CPU memory reach the store (and the store is committed) every N steps and after the
  // last; states in the store are written and committed every step regardless.
  std::int64_t commit_every = 1;
  std::uint64_t store_extent_bytes = std::uint64_t{4} << 20;
  // Tests: the CPU tier runs the CUDA tier's gradient drain even when its compute budget could
  // hold a gradient buffer per block (OffloadShape::block_grads_in_cpu).
  bool block_grads_in_cpu = false;
  // Floats per optimizer state piece (state_pieces.h), rounded to the store's extent; 0 = the
  // default (2^24). A store keeps the piece size it was created with: --resume checks it.
  std::int64_t state_piece_floats = 0;
  // The planner's choices when asked for (OffloadShape): streaming granularity (0 = it decides, 1
  // whole blocks, block_piece_count() pieces) and the store's slots per extent (0 = it decides,
  // 1, 2).
  std::int64_t pieces_per_block = 0;
  std::int64_t store_slots = 0;
  // What each block's forward keeps for its backward, and where (--activations, --activations-in).
  ActivationRequest activations;
  // Plan for SSDs that are not here (--dry-run only): their space instead of the --ssd
  // directories', which then need not exist (plan_offload_run).
  std::optional<AssumedSsds> assumed_ssds;
  // Tests: the one-slot store (plan store_slots == 1) calls this on the optimizer thread each time
  // one more of step `step`'s state pieces is updated, on disk and journaled (`pieces_done` of
  // them, in processing order); what it throws ends train() as a crash there would (nothing of the
  // step is committed), for --resume to roll the step forward.
  std::function<void(std::int64_t step, std::int64_t pieces_done)> on_piece_durable;
  // Data parallel (train/data_parallel.h): this process's rank group, or none. Each rank has its
  // own store (ssd_dirs) with the full states; every unit's gradients are summed over the ranks
  // as they become final, before the norm and the update. TrainOptions::ranks and ::rank must
  // match it.
  std::shared_ptr<RankReduction> ranks;
  // With ranks the store keeps its previous commit too (tensor_store.h: keep_previous), and
  // --resume may open it instead of the last: for a rank that committed one step more than the
  // others before a rank stopped (the app compares the ranks' first steps).
  bool resume_previous_commit = false;
};

// The plan a run with these options would get: fills the free space of options.ssd_dirs (and, for
// resume, the space the store already holds), or of options.assumed_ssds, and calls plan_offload.
// No store is touched.
OffloadPlan plan_offload_run(const ModelConfig& config, const TrainOptions& train,
                             const OffloadOptions& options);
// Its two halves: the budgets (the free space filled in) and the planner's shape of the run
// (UsageError for a --commit-every or state piece the planner cannot take).
OffloadBudgets offload_budgets_of(const OffloadOptions& options);
OffloadShape offload_shape_of(const TrainOptions& train, const OffloadOptions& options);

// The initial weights, one tensor at a time in ModelWeights::named() order (any dtype, CPU): e.g.
// for_each_init_weight (model_weights.h). The trainer keeps only what its compute tier holds and
// sends each tensor to the states (store or RAM) as it arrives: no whole-model copy is made, so
// with the blocks streamed and the states in the store the model never has to fit in memory.
// The CPU tier may keep a visited fp32 contiguous tensor itself as a resident compute weight: a
// source hands over tensors that own their memory and that it does not touch again.
using WeightSource = std::function<void(const WeightVisitor& visit)>;

class OffloadTrainer {
 public:
  // initial: visited once (not at all with options.resume: the store has the weights); fp32 CPU
  // contiguous tensors that the CPU tier keeps resident are taken over as its compute weights and
  // updated in place. Plans the run (UsageError when it does not fit), then creates the store in
  // options.ssd_dirs (UsageError when one exists there and resume is off) or opens it (resume;
  // UsageError when its run disagrees with `train` on seed, micro-batch, seq, accum or model). A
  // source that skips, repeats, reorders or misshapes a tensor is refused (UsageError naming it).
  OffloadTrainer(ModelConfig config, WeightSource initial, TrainOptions train,
                 OffloadOptions options);
  // The same from weights already in memory, their shapes checked first (UsageError naming the
  // tensor); the CPU tier's resident fp32 contiguous ones are updated in place.
  OffloadTrainer(ModelConfig config, ModelWeights initial, TrainOptions train,
                 OffloadOptions options);
  ~OffloadTrainer();
  OffloadTrainer(const OffloadTrainer&) = delete;
  OffloadTrainer& operator=(const OffloadTrainer&) = delete;

  // Runs steps first_step() … train.steps. Same callbacks and result as InMemoryTrainer::train;
  // losses cover only the steps run here (no step-0 evaluation on resume).
  TrainResult train(const TokenData& train_data, const TokenData& valid_data,
                    const std::function<void(const StepReport&)>& on_step = {});

  const OffloadPlan& plan() const { return plan_; }
  const OffloadStats& stats() const { return stats_; }
  std::int64_t first_step() const { return first_step_; }
  // The step the constructor finished for a run stopped mid-update in place (one store slot),
  // which train() reports first: first_step() - 1. None otherwise, and once train() has run.
  std::optional<std::int64_t> rolled_forward_step() const {
    return rolled_forward_ ? std::optional<std::int64_t>(rolled_forward_->step) : std::nullopt;
  }
  // The compute weights: on the CPU tier fp32 and equal bit for bit to the master weights in the
  // store; on the CUDA tier bf16 on the GPU. Streamed blocks are shape-only (meta) tensors here:
  // read_master() has every weight.
  const ModelWeights& weights() const { return compute_; }
  // The fp32 master weights as committed in the store (reads it).
  ModelWeights read_master();

 private:
  // Constructor parts: the compute weights (shapes, or zeros to be loaded), the unit table, the
  // store (created and filled, or opened and checked), the placements.
  void make_compute_weights();
  void make_unit_table();
  void open_or_create_store(const WeightSource& initial);
  void make_placements();
  // Resume, before the run is planned: opens the store and reads its train.state (format checked;
  // --store-slots auto takes the store's).
  void open_resumed_store();
  // A new store from the initial weights (m = v = 0), setting the resident compute weights.
  void init_store(const WeightSource& initial);
  // Resume, once the placements are made: rolls a sealed step forward, loads the compute weights.
  void open_store();
  void check_resumed_run(const std::int64_t* meta) const;
  // The one-slot store's step `sealed.step`, sealed but not committed by a run that stopped
  // mid-update: its remaining pieces are updated from the stored gradients and it is committed.
  void roll_forward(const SealedStep& sealed);
  // The one-slot store's seal of a step (the embeddings' and ln_f's gradients with it).
  SealJob seal_job(const SealedStep& step);
  // One micro-batch's forward and backward (k of the step's K); adds its loss to loss_sum.
  void run_micro_batch(const TokenData& train_data, std::int64_t step, std::int64_t k,
                       double& loss_sum, StepGradients& grads,
                       std::unique_ptr<common::PhaseTimes::Scope>& backward,
                       common::PhaseTimes& phases);
  // Mean validation loss (evaluate_loss's computation, with the blocks from the placement).
  double evaluate(const TokenData& valid_data);

  ModelConfig config_;
  TrainOptions train_;
  OffloadOptions options_;
  OffloadPlan plan_;
  OffloadStats stats_;
  std::int64_t first_step_ = 1;
  // A step roll_forward finished: train() reports it first (its loss and norm as journaled).
  std::optional<StepReport> rolled_forward_;
  double rolled_forward_seconds_ = 0;
  // The placements and buffers the store's I/O points into: destroyed after store_.
  std::unique_ptr<OffloadState> impl_;
  ModelWeights compute_;  // the compute tier's: fp32 CPU, or bf16 GPU; streamed blocks shape-only
  std::unique_ptr<TensorStore> store_;  // last: its destructor waits for I/O in flight
};

}  // namespace sparsetrain::fuyou
