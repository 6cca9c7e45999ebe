// The offloaded trainer behind `sparsetrain fuyou finetune --ssd …` (Fuyou's pipeline), CPU
// compute tier: the fp32 master weights and Adam m, v live in the SSD tensor store (or in the CPU
// budget when the planner puts them there, written through to the store), the compute weights in
// the compute tier. Each iteration runs the forward block by block and the backward in reverse with
// block-wise recompute (gpt_model.h); as soon as an optimizer unit's gradients are final (ln_f
// after the LM head, block l after its backward, the embeddings last) the compute thread hands them
// to the optimizer thread, which has already prefetched that unit's master/m/v into one of two
// staging slots, runs the fused AdamW (cpu_adam.h), writes the states back asynchronously and
// publishes the new compute weights — overlapped with the backward of the following blocks. The
// states are laid out, prefetched, updated and written in pieces of at most 2^24 floats of each
// of master, m, v (state_pieces.h), so a staging slot holds one piece, not one whole unit.
// Gradient buffers of blocks in flight are distinct (a pool of two with K = 1, one per block
// otherwise); so are the staging slots. At the end of a step the optimizer thread commits the store
// (the checkpoint: states, weights, step; the data position follows from the step) and the next
// forward starts only then, so the next iteration sees exactly plain AdamW's weights.
// (The optimizer thread is optimizer_stage.h; what the two share, offload_internals.h.)
//
// Gradient clipping by global norm stays exact by deferral: with --grad-clip > 0 every gradient is
// kept until the backward ends, the norm is computed in the in-memory trainer's order, and only
// then do the updates run (state prefetch still overlaps the backward; the AdamW itself does not).
// Threads: the compute thread (the caller) only computes and waits on condition variables; every
// store call (read, write, commit) happens on the optimizer thread
// (scripts/fuyou_compute_thread_io.sh checks it with strace).
// CUDA tier (--device cuda): the compute weights are bf16 on the GPU and the gradient accumulators
// fp32 there; the compute thread records a CUDA event after each unit's gradients and goes on; the
// optimizer thread, on a copy stream of its own (cuda_transfer.h), waits for that event and, state
// piece by state piece, downloads the gradients into one of two pinned fp32 slots, runs the same
// CPU AdamW writing bf16 weights into one of two pinned slots and uploads them, the upload
// overlapping the next piece's update.
// The step ends only when every upload is done. Same operations as InMemoryTrainer's CUDA path.
// Streaming (CPU tier, when the compute weights exceed --gpu-mem): the embeddings and ln_f stay in
// the compute tier, the blocks stream through plan().stream_slots slots (block_stream.h), each
// loaded from its fp32 master — the first segment of each of its state pieces, in RAM or in the
// store — before
// the forward and again before the backward; their updates go only to the master.
// When even that leaves no room, the block inputs go to the store as the forward makes them and
// come back ahead of the backward (input_stash.h).
// Streaming on the CUDA tier (when the bf16 weights do not fit --gpu-mem): the embeddings and ln_f
// stay on the GPU; the blocks stream through plan().stream_slots bf16 GPU slots (cuda_transfer.h:
// make_cuda_block_slots — the loader thread converts the fp32 master, from RAM or the store, to
// bf16 in pinned memory and uploads it on a copy stream; the compute stream waits on the upload's
// event, the copy stream on the release's). A streamed block's update goes only to its master: no upload
// from the optimizer. Its gradients leave the GPU right after its backward through the pool of two
// fp32 buffers: with K = 1 and no clipping as any unit's (downloaded by the update); otherwise
// (plan().block_grads_in_cpu) the optimizer thread "drains" each micro-batch's gradient into the
// block's fp32 CPU accumulator — copy at micro-batch 0, then add: per element ((g0 + g1) + g2) …
// in fp32, the in-memory trainer's GPU accumulator's very additions in its order — and with K > 1
// reduces the block's norm terms on the CPU (a different reduction order than the GPU's: the
// global norm, hence a clipping factor, may differ in the last bits; with K = 1 they come from the
// GPU pool slot as before). The compute thread waits (condition variable) for every drain before
// the norm. When --cpu-mem cannot hold those accumulators (plan().block_grads_in_store) they live
// in the store, one tensor per block in state-piece layout: the drain adds each piece to the stored
// sum (the same additions) and writes it back, and the update reads it back piece by piece.
// Not verified on a GPU yet (tests/gpu/offload_cuda_test.cpp has the checks).
// When two streamed slots do not fit beside the block inputs, those go to pinned CPU memory as the
// forward makes them and come back ahead of the backward, all enqueued on a copy stream with
// events (cuda_transfer.h: CudaInputStash; plan().inputs_in_cpu).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fuyou/model/gpt_weights.h"
#include "fuyou/model/model_config.h"
#include "fuyou/offload/offload_plan.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/model/token_data.h"
#include "fuyou/train/in_memory_trainer.h"

namespace sparsetrain::fuyou {

class TensorStore;

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
};

// The plan a run with these options would get: fills the free space of options.ssd_dirs (and, for
// resume, the space the store already holds) and calls plan_offload. No store is touched.
OffloadPlan plan_offload_run(const ModelConfig& config, const TrainOptions& train,
                             const OffloadOptions& options);

// The initial weights, one tensor at a time in GptWeights::named() order (any dtype, CPU): e.g.
// for_each_init_gpt_weight (gpt_weights.h). The trainer keeps only what its compute tier holds and
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
  OffloadTrainer(ModelConfig config, GptWeights initial, TrainOptions train,
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
  // The compute weights: on the CPU tier fp32 and equal bit for bit to the master weights in the
  // store; on the CUDA tier bf16 on the GPU. Streamed blocks are shape-only (meta) tensors here:
  // read_master() has every weight.
  const GptWeights& weights() const { return compute_; }
  // The fp32 master weights as committed in the store (reads it).
  GptWeights read_master();

 private:
  class OptimizerStage;
  struct Impl;
  // A new store from the initial weights (m = v = 0), setting the resident compute weights.
  void init_store(const WeightSource& initial);
  void open_store();

  ModelConfig config_;
  TrainOptions train_;
  OffloadOptions options_;
  OffloadPlan plan_;
  OffloadStats stats_;
  std::int64_t first_step_ = 1;
  std::unique_ptr<Impl> impl_;  // buffers the store's I/O points into: destroyed after store_
  GptWeights compute_;          // fp32, compute tier
  std::unique_ptr<TensorStore> store_;  // last: its destructor waits for I/O in flight
};

}  // namespace sparsetrain::fuyou
