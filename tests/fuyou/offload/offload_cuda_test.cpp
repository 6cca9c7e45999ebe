// The offloaded trainer's CUDA tier against the in-memory trainer's CUDA path (the reference: the
// same bf16 compute, fp32 GPU accumulators and CPU AdamW, with nothing offloaded or overlapped):
// 20 steps of a small GPT with the states in the SSD store under a CPU budget smaller than them,
// overlapped (no clipping) and deferred (clipping + accumulation); and a run stopped at step 10
// that resumes from the store. The run asks torch for deterministic kernels (warn-only: those
// without a deterministic version, e.g. some attention backwards, stay as they are), so what is
// left of run-to-run noise comes from atomics in such kernels; in a first run without that, the
// token embedding's backward (index_add_, atomics) made a clipped, accumulated run drift past 1e-3
// relative in loss. Tolerances are therefore bf16's: losses within 5e-3 relative and fp32 master
// weights within 2e-2 of the largest weight, a wrong or stale update moves them by far more; the
// actual differences are printed. Skips (77) where no device is visible, as on CI.
// Streaming (a --gpu-mem that holds only 2 bf16 block slots; K = 1; K = 2 with clipping, states
// in RAM; K = 2 overlapped; block inputs in pinned CPU memory; stop + resume; clipping with the
// block gradients added up in the store), written without a
// GPU at hand and first run by scripts/gpu_check.sh: the blocks' bf16 weights are the
// CPU's round-to-nearest-even of the fp32 master, which is what the resident tier's CPU AdamW
// writes, so K = 1 runs do the same operations as the resident ones; with K > 1 the block
// gradients add up on the CPU (same fp32 additions, same order) but their norm is reduced on the
// CPU, so a clipping factor may differ in its last bits: same tolerances.
#define DOCTEST_CONFIG_IMPLEMENT
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/error.h"
#include "fuyou/model/demo_text.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/offload/offload_test_support.h"
#include "fuyou/offload/offload_trainer.h"
#include "fuyou/train/in_memory_trainer.h"

using namespace sparsetrain::fuyou;
using offload_test::max_relative_difference;
using offload_test::train_and_stop_after;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  ModelConfig config = model_config_from_name("custom:L=4,C=128,H=4,V=256,T=128");
  std::pair<TokenData, TokenData> data = TokenData::from_bytes(std::string(demo_text())).split(0.1);
};

TrainOptions small_options() {
  TrainOptions o;
  o.steps = 20;
  o.micro_batch = 8;
  o.seq = 64;
  o.lr = 3e-3;
  o.warmup = 2;
  o.eval_every = 10;
  o.eval_batches = 2;
  o.seed = 7;
  o.device = TrainDevice::kCuda;
  return o;
}

OffloadOptions offload_options(const std::string& name, std::uint64_t cpu_bytes) {
  const fs::path root = fs::temp_directory_path() / ("st-cuda-offload-" + name);
  fs::remove_all(root);
  return offload_test::striped_store_options(root, cpu_bytes);
}

void check_losses(const TrainResult& got, const std::vector<double>& want, std::size_t from) {
  double worst = 0;
  for (std::size_t i = 0; i < got.losses.size(); ++i) {
    const double w = want[from + i];
    worst = std::max(worst, std::abs(got.losses[i] - w) / std::abs(w));
    INFO("step " << from + i + 1 << ": offloaded " << got.losses[i] << ", in memory " << w);
    CHECK(std::abs(got.losses[i] - w) <= 5e-3 * std::abs(w));
  }
  MESSAGE("largest relative loss difference " << worst);
}

// Trains the resumed run `second` (steps 11..20) and checks it against the uninterrupted
// `reference` run, which gave `want`: losses as check_losses, final fp32 master within 2e-2 of the
// largest weight; prints that difference after `what`.
void check_resumed_run(OffloadTrainer& second, const Fixture& f, const InMemoryTrainer& reference,
                       const TrainResult& want, const std::string& what) {
  const TrainResult got = second.train(f.data.first, f.data.second);
  REQUIRE(got.losses.size() == 10);
  check_losses(got, want.losses, 10);
  const double diff = max_relative_difference(second.read_master(), reference.master());
  MESSAGE(what << ": max relative difference " << diff);
  CHECK(diff <= 2e-2);
}

// The smallest --gpu-mem the planner accepts for this run, with the block inputs on the GPU or
// (inputs_out) in CPU memory: the one that streams the blocks through 2 slots (found by bisection
// over the pure-arithmetic plan).
std::uint64_t smallest_gpu_budget(const TrainOptions& options, OffloadOptions offload,
                                  bool inputs_out = false, bool outside_grads_out = false) {
  Fixture f;
  offload.budgets.compute_bytes = 0;
  std::uint64_t hi = plan_offload_run(f.config, options, offload).compute_total, lo = 1;
  while (lo < hi) {
    const std::uint64_t mid = lo + (hi - lo) / 2;
    offload.budgets.compute_bytes = mid;
    bool fits = false;
    try {
      const OffloadPlan plan = plan_offload_run(f.config, options, offload);
      fits =
          (inputs_out || !plan.inputs_in_cpu) && (outside_grads_out || !plan.outside_grads_in_cpu);
    } catch (const sparsetrain::common::UsageError&) {
    }
    (fits ? hi : lo) = fits ? mid : mid + 1;
  }
  return lo;
}

// Trains both ways on the GPU and compares; returns the offloaded run's stats.
OffloadStats compare_with_in_memory(const TrainOptions& options, OffloadOptions offload,
                                    bool states_in_cpu = false) {
  Fixture f;
  InMemoryTrainer reference(f.config, init_model_weights(f.config, 3, at::TensorOptions()),
                            options);
  const TrainResult want = reference.train(f.data.first, f.data.second);
  OffloadTrainer trainer(f.config, init_model_weights(f.config, 3, at::TensorOptions()), options,
                         offload);
  CHECK(trainer.plan().states_in_cpu == states_in_cpu);
  const TrainResult got = trainer.train(f.data.first, f.data.second);
  REQUIRE(got.losses.size() == want.losses.size());
  check_losses(got, want.losses, 0);
  CHECK(want.losses.back() < want.losses.front() - 0.1);  // it trained
  const double diff = max_relative_difference(trainer.read_master(), reference.master());
  MESSAGE("final fp32 master weights: max relative difference " << diff);
  CHECK(diff <= 2e-2);
  if (trainer.plan().stream_slots == 0) {
    // The compute weights are the master's bf16 rounding.
    const double compute_diff = max_relative_difference(trainer.weights(), trainer.read_master());
    CHECK(compute_diff <= 1.0 / 128);
  } else {
    // Streamed blocks are nowhere on the GPU between uses: shape-only tensors here.
    CHECK(trainer.weights().blocks[0][0].is_meta());
    CHECK(trainer.weights().wte.is_cuda());
  }
  return trainer.stats();
}

}  // namespace

TEST_CASE("CUDA offloaded training with states in the store matches in-memory CUDA training") {
  TrainOptions options = small_options();
  options.grad_clip = 0;  // updates overlap the backward
  const OffloadStats stats = compare_with_in_memory(options, offload_options("store", 8 << 20));
  const std::uint64_t params = static_cast<std::uint64_t>(Fixture{}.config.param_count());
  CHECK(stats.pcie_d2h_bytes == 20 * 4 * params);  // fp32 gradients down
  CHECK(stats.pcie_h2d_bytes == 20 * 2 * params);  // bf16 weights up
  CHECK(stats.commits == 20);
  MESSAGE("units updated during backward: " << stats.units_updated_during_backward << " of "
                                            << 20 * (4 + 2));
}

TEST_CASE("CUDA offloaded training with clipping and accumulation matches in-memory CUDA") {
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  options.accum = 2;
  const OffloadStats stats = compare_with_in_memory(options, offload_options("clip", 8 << 20));
  CHECK(stats.units_updated_during_backward == 0);
}

TEST_CASE("a CUDA run stopped after step 10 resumes from the store") {
  Fixture f;
  TrainOptions options = small_options();
  options.grad_clip = 1.0;
  InMemoryTrainer reference(f.config, init_model_weights(f.config, 3, at::TensorOptions()),
                            options);
  const TrainResult want = reference.train(f.data.first, f.data.second);
  OffloadOptions offload = offload_options("resume", 8 << 20);
  {
    OffloadTrainer first(f.config, init_model_weights(f.config, 3, at::TensorOptions()), options,
                         offload);
    train_and_stop_after(first, f.data.first, f.data.second, 10);
  }
  offload.resume = true;
  OffloadTrainer second(f.config, ModelWeights{}, options, offload);
  CHECK(second.first_step() == 11);
  check_resumed_run(second, f, reference, want, "resumed run's final master");
}

namespace {

// L = 4, C = 128: a block has 12 · 128² + 13 · 128 = 198,272 parameters; the embeddings and ln_f
// (256 + 128) · 128 + 256 = 49,408.
constexpr std::uint64_t kBlock = 198272, kOutside = 49408;

// 12 MiB of CPU budget: below the states (10.1 MB) plus the pinned buffers, so the states go to
// the store; above the staging, pinned and (K > 1) CPU gradient buffers the streamed plan needs.
OffloadOptions streamed_options(const std::string& name, const TrainOptions& options,
                                std::uint64_t cpu_bytes = 12 << 20, bool inputs_out = false,
                                std::int64_t pieces_per_block = 1, bool outside_grads_out = false) {
  OffloadOptions offload = offload_options(name, cpu_bytes);
  offload.pieces_per_block = pieces_per_block;  // whole blocks, unless pieces are asked for
  offload.budgets.compute_bytes =
      smallest_gpu_budget(options, offload, inputs_out, outside_grads_out);
  Fixture f;
  const OffloadPlan plan = plan_offload_run(f.config, options, offload);
  MESSAGE("--gpu-mem " << offload.budgets.compute_bytes << " B:\n" << plan.describe());
  CHECK(plan.stream_slots == 2);
  CHECK(plan.pieces_per_block == pieces_per_block);
  CHECK(plan.resident_blocks == 0);
  CHECK(plan.inputs_in_cpu == inputs_out);
  CHECK(plan.outside_grads_in_cpu == outside_grads_out);
  return offload;
}

}  // namespace

TEST_CASE("CUDA blocks streamed through 2 GPU slots from the store match in-memory CUDA training") {
  TrainOptions options = small_options();
  options.grad_clip = 0;  // K = 1, no clipping: gradients leave through the GPU pool of two
  OffloadOptions offload = streamed_options("stream", options);
  const OffloadStats stats = compare_with_in_memory(options, offload);
  // Up: each step 4 blocks forward + 4 backward, validation at steps 0, 10, 20 (2 batches of 4
  // blocks), all bf16; plus the embeddings' and ln_f's updated weights every step.
  const std::uint64_t loads = 20 * 8 + 3 * 2 * 4;
  CHECK(stats.pcie_h2d_bytes == loads * 2 * kBlock + 20 * 2 * kOutside);
  CHECK(stats.pcie_d2h_bytes == 20 * 4 * (kOutside + 4 * kBlock));  // every fp32 gradient once
  CHECK(stats.stream_read_bytes == loads * 4 * 198656);  // fp32 master, padded, from the store
  MESSAGE("compute thread waited " << stats.stream_wait_seconds << " s for streamed blocks");
}

TEST_CASE("streamed CUDA blocks with accumulation (K = 2) and clipping match in-memory CUDA") {
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  options.accum = 2;
  OffloadOptions offload = streamed_options("stream-clip", options, 64 << 20);  // states in RAM
  Fixture f;
  REQUIRE(plan_offload_run(f.config, options, offload).block_grads_in_cpu);
  const OffloadStats stats = compare_with_in_memory(options, offload, /*states_in_cpu=*/true);
  CHECK(stats.units_updated_during_backward == 0);
  // Each block's gradients come down after every micro-batch's backward of it.
  CHECK(stats.pcie_d2h_bytes == 20 * 4 * (kOutside + 2 * 4 * kBlock));
  CHECK(stats.ssd_read_bytes == 0);
}

TEST_CASE("streamed CUDA blocks with K = 2, overlapped updates, states in the store, match too") {
  TrainOptions options = small_options();
  options.grad_clip = 0;
  options.accum = 2;
  OffloadOptions offload = streamed_options("stream-accum", options);
  const OffloadStats stats = compare_with_in_memory(options, offload);
  MESSAGE("units updated during backward: " << stats.units_updated_during_backward);
}

TEST_CASE("streamed CUDA blocks with the block inputs in pinned CPU memory, K = 2, match too") {
  TrainOptions options = small_options();
  options.grad_clip = 1.0;
  options.accum = 2;
  OffloadOptions offload = streamed_options("stream-inputs", options, 16 << 20, true);
  const OffloadStats stats = compare_with_in_memory(options, offload);
  // Each micro-batch's 4 block inputs (bf16 [8, 64, 128]) go down and come back up.
  const std::uint64_t input = 2 * 8 * 64 * 128;
  CHECK(stats.input_bytes_written == 20 * 2 * 4 * input);
  CHECK(stats.input_bytes_read == 20 * 2 * 4 * input);
}

TEST_CASE("a streamed CUDA run stopped after step 10 resumes from the store") {
  Fixture f;
  TrainOptions options = small_options();
  options.grad_clip = 1.0;
  InMemoryTrainer reference(f.config, init_model_weights(f.config, 3, at::TensorOptions()),
                            options);
  const TrainResult want = reference.train(f.data.first, f.data.second);
  OffloadOptions offload = streamed_options("stream-resume", options);
  {
    OffloadTrainer first(f.config, init_model_weights(f.config, 3, at::TensorOptions()), options,
                         offload);
    train_and_stop_after(first, f.data.first, f.data.second, 10);
  }
  offload.resume = true;
  OffloadTrainer second(f.config, ModelWeights{}, options, offload);
  CHECK(second.first_step() == 11);
  REQUIRE(second.plan().stream_slots == 2);
  check_resumed_run(second, f, reference, want, "resumed streamed run's final master");
}

// Optimizer states in pieces of 16,384 floats (state_pieces.h; the 64 KiB test extents allow it):
// each block's 198,656 padded floats are 13 pieces, so every unit's gradients come down, update
// and go back up piece by piece through pinned slots of one piece, and streamed blocks are
// converted and uploaded piece by piece straight from the states in RAM.
TEST_CASE("CUDA offloaded training with the states in pieces matches in-memory CUDA training") {
  TrainOptions options = small_options();
  options.grad_clip = 0;
  OffloadOptions offload = offload_options("pieces", 8 << 20);
  offload.state_piece_floats = 16384;
  const OffloadStats stats = compare_with_in_memory(options, offload);
  const std::uint64_t params = static_cast<std::uint64_t>(Fixture{}.config.param_count());
  CHECK(stats.pcie_d2h_bytes == 20 * 4 * params);  // the same transfers as whole units
  CHECK(stats.pcie_h2d_bytes == 20 * 2 * params);
}

TEST_CASE("streamed CUDA blocks uploaded piece by piece from RAM, K = 2 + clipping, match") {
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  options.accum = 2;
  OffloadOptions offload = streamed_options("stream-pieces", options, 64 << 20);  // states in RAM
  offload.state_piece_floats = 16384;
  Fixture f;
  const OffloadPlan plan = plan_offload_run(f.config, options, offload);
  REQUIRE(plan.stream_slots == 2);
  std::uint64_t upload_buffers = 0;
  for (const PlanItem& item : plan.cpu_items) {
    if (item.what == "2 pinned bf16 piece upload buffers") upload_buffers = item.bytes;
  }
  CHECK(upload_buffers == 2 * 2 * 16384);  // one piece each, not one block
  const OffloadStats stats = compare_with_in_memory(options, offload, /*states_in_cpu=*/true);
  CHECK(stats.ssd_read_bytes == 0);
  CHECK(stats.stream_read_bytes == (20 * 2 * 8 + 3 * 2 * 4) * 4ull * 198656);
}

TEST_CASE("streamed CUDA blocks with clipping, gradients added up in the store, match too") {
  // 10 MiB of CPU budget holds neither the states nor the 4 blocks' fp32 accumulators (11.9 MB
  // with them, 9.5 MB without): they go to the store through the pinned gradient slots.
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  OffloadOptions offload = streamed_options("stream-grads-store", options, 10 << 20);
  Fixture f;
  REQUIRE(plan_offload_run(f.config, options, offload).block_grads_in_store);
  const OffloadStats stats = compare_with_in_memory(options, offload);
  CHECK(stats.units_updated_during_backward == 0);
  CHECK(stats.pcie_d2h_bytes == 20 * 4 * (kOutside + 4 * kBlock));
  // Each step writes the states and every block's accumulator once.
  const std::uint64_t state_bytes = 12ull * (49152 + 4 * 198656 + 1024);
  CHECK(stats.ssd_write_bytes == 20 * (state_bytes + 4 * 4 * 198656));
}

int main(int argc, char** argv) {
  ::setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0);  // cuBLAS's deterministic mode
  if (!torch::cuda::is_available()) {
    std::printf("no CUDA device visible: skipping\n");
    return 77;
  }
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
  doctest::Context context(argc, argv);
  return context.run();
}

// Blocks streamed in pieces on the GPU (compute_blocks.h: StreamedPieces over CUDA piece slots):
// two bf16 slots of the largest piece (MLP in), the pieces' gradients drained to the CPU side.
TEST_CASE("CUDA blocks streamed in pieces, K = 2 + clipping, states in the store, match") {
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  options.accum = 2;
  const OffloadOptions offload =
      streamed_options("pieces", options, 12 << 20, false, kGpt2BlockPieces);
  const OffloadStats stats = compare_with_in_memory(options, offload);
  // Up, bf16: per micro-batch each block's pieces for the forward and the backward, and all but MLP
  // out (4 · 128² + 128 parameters) for the pieces' inputs; validation at steps 0, 10, 20 (2
  // batches) once; the embeddings' and ln_f's updated weights every step.
  const std::uint64_t mlp_out = 4 * 128 * 128 + 128;
  CHECK(stats.pcie_h2d_bytes ==
        2 * (20 * 2 * 4 * (3 * kBlock - mlp_out) + 3 * 2 * 4 * kBlock) + 20 * 2 * kOutside);
  MESSAGE("compute thread waited " << stats.stream_wait_seconds << " s for streamed pieces");
}

// The smallest GPU budget of all: pieces, the block inputs in pinned memory and the embeddings'
// and ln_f's fp32 gradients in CPU memory (the loss backward's head slices and each micro-batch's
// x0 gradient come down and add up there).
TEST_CASE("CUDA with the embedding and head gradients in CPU memory, K = 2 + clipping, match") {
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  options.accum = 2;
  const OffloadOptions offload = streamed_options("outside-cpu", options, 16 << 20, true,
                                                  kGpt2BlockPieces, /*outside_grads_out=*/true);
  const OffloadStats stats = compare_with_in_memory(options, offload);
  MESSAGE("pcie down " << stats.pcie_d2h_bytes << " B");
}

TEST_CASE("CUDA blocks streamed in pieces, K = 1, overlapped updates, states in RAM, match") {
  TrainOptions options = small_options();
  options.grad_clip = 0;
  const OffloadOptions offload =
      streamed_options("pieces-ram", options, 64 << 20, false, kGpt2BlockPieces);
  const OffloadStats stats = compare_with_in_memory(options, offload, /*states_in_cpu=*/true);
  CHECK(stats.units_updated_during_backward > 0);
}

TEST_CASE("CUDA with one store slot: updates in place match; a crash mid-update rolls forward") {
  // The states in place in the store, every gradient sealed there first (the block gradients
  // leave the GPU through the pool of two and add up in the store, the embeddings' and ln_f's are
  // downloaded by the seal); a fault once step 10's second piece is journaled, then --resume.
  Fixture f;
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  OffloadOptions offload = offload_options("in-place", 8 << 20);
  offload.store_slots = 1;
  const OffloadStats stats = compare_with_in_memory(options, offload);
  CHECK(stats.units_updated_during_backward == 0);

  InMemoryTrainer reference(f.config, init_model_weights(f.config, 3, at::TensorOptions()),
                            options);
  const TrainResult want = reference.train(f.data.first, f.data.second);
  offload = offload_options("in-place-fault", 8 << 20);
  offload.store_slots = 1;
  struct Crash {};
  {
    OffloadOptions faulty = offload;
    faulty.on_piece_durable = [](std::int64_t step, std::int64_t done) {
      if (step == 10 && done == 2) throw Crash{};
    };
    OffloadTrainer first(f.config, init_model_weights(f.config, 3, at::TensorOptions()), options,
                         faulty);
    CHECK_THROWS_AS(first.train(f.data.first, f.data.second), Crash);
  }
  offload.resume = true;
  OffloadTrainer second(f.config, ModelWeights{}, options, offload);
  CHECK(second.first_step() == 11);
  CHECK(second.rolled_forward_step() == 10);
  const TrainResult got = second.train(f.data.first, f.data.second);
  REQUIRE(got.losses.size() == 11);  // step 10's, as journaled, then 11 … 20
  check_losses(got, want.losses, 9);
  const double diff = max_relative_difference(second.read_master(), reference.master());
  MESSAGE("rolled-forward run's final master: max relative difference " << diff);
  CHECK(diff <= 2e-2);
}

TEST_CASE("CUDA keeping activations in the GPU (keep-all, a list, auto) matches in-memory CUDA") {
  // Kept in the compute tier (the pinned and store tiers follow): the backward reads the bf16
  // tensors the forward made instead of recomputing them; attention's backward still records its
  // forward through autograd. Resident blocks, then blocks streamed through 2 slots, whose
  // recompute then loads no piece.
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  options.accum = 2;
  for (const char* activations : {"keep-all", "qkv,resid,fc", "auto"}) {
    CAPTURE(activations);
    OffloadOptions offload = offload_options("kept", 8 << 20);
    offload.activations = parse_activation_request(activations, Fixture{}.config.n_layer);
    const OffloadStats stats = compare_with_in_memory(options, offload);
    if (std::string(activations) == "keep-all") {
      // Only attention's own forward is recomputed: 4·C·T per token a block.
      CHECK(stats.recompute_flops == doctest::Approx(20.0 * 2 * 8 * 64 * 4 * (4.0 * 128 * 64)));
    }
  }
  // Kept in pinned CPU memory: down on a copy stream in the forward, up (prefetched a block
  // ahead) into two GPU slots in the backward.
  OffloadOptions pinned = offload_options("kept-pinned", 64 << 20);
  pinned.activations = parse_activation_request("keep-all", Fixture{}.config.n_layer);
  pinned.activations.tier = ActivationTier::kCpu;
  const OffloadStats pinned_stats = compare_with_in_memory(options, pinned, /*states_in_cpu=*/true);
  const OffloadPlan pinned_plan = plan_offload_run(Fixture{}.config, options, pinned);
  // Down and up: the tensors as planned (bf16, the LayerNorms' statistics fp32, 256-byte aligned).
  CHECK(pinned_stats.activation_bytes_to_cpu == 20 * 2 * pinned_plan.activations.cpu_bytes);
  CHECK(pinned_stats.activation_bytes_from_cpu == pinned_stats.activation_bytes_to_cpu);
  // Kept in the store: down into two pinned staging buffers, written and read back by the stash's
  // I/O thread, up into the same two GPU slots.
  OffloadOptions stored = offload_options("kept-store", 64 << 20);
  stored.activations = parse_activation_request("keep-all", Fixture{}.config.n_layer);
  stored.activations.tier = ActivationTier::kStore;
  const OffloadStats stored_stats = compare_with_in_memory(options, stored, /*states_in_cpu=*/true);
  const OffloadPlan stored_plan = plan_offload_run(Fixture{}.config, options, stored);
  CHECK(stored_plan.activations.store_bytes == pinned_plan.activations.cpu_bytes);
  CHECK(stored_stats.activation_bytes_written == 20 * 2 * stored_plan.activations.store_bytes);
  CHECK(stored_stats.activation_bytes_read == stored_stats.activation_bytes_written);
  CHECK(stored_stats.activation_bytes_to_cpu == pinned_stats.activation_bytes_to_cpu);
  CHECK(stored_stats.activation_bytes_from_cpu == pinned_stats.activation_bytes_from_cpu);
  // Streamed blocks keeping resid (no piece-1 recompute), with room for it beside the 2 slots.
  OffloadOptions streamed = streamed_options("kept-stream", options);
  streamed.activations = parse_activation_request("resid", Fixture{}.config.n_layer);
  OffloadOptions unlimited = streamed;
  unlimited.budgets.compute_bytes = 0;
  streamed.budgets.compute_bytes +=
      plan_offload_run(Fixture{}.config, options, unlimited).activations.compute_bytes;
  const OffloadPlan plan = plan_offload_run(Fixture{}.config, options, streamed);
  MESSAGE(plan.describe());
  CHECK(plan.stream_slots == 2);
  CHECK(plan.activations.blocks_keeping() == 4);
  compare_with_in_memory(options, streamed);
}

TEST_CASE("CUDA kept activations in pinned memory and the store at once give the GPU run's bits") {
  // Keep-all on 4 blocks with room on the GPU for the two slots only and in CPU memory for two
  // blocks beside the staging buffers: blocks 3, 2 pinned, 1, 0 in the store, all back through
  // the same two GPU slots. The round trips are exact copies, so the run equals one that keeps
  // everything on the GPU (bit for bit where the attention backward is deterministic; within the
  // bf16 tolerance of the other tests where it is not).
  TrainOptions options = small_options();
  options.grad_clip = 0.5;
  options.accum = 2;
  const Fixture f;
  OffloadOptions on_gpu = offload_options("kept-gpu", 64 << 20);
  on_gpu.activations = parse_activation_request("keep-all", f.config.n_layer);
  on_gpu.activations.tier = ActivationTier::kCompute;
  OffloadOptions mixed = offload_options("kept-mixed", 64 << 20);
  mixed.activations = parse_activation_request("recompute", f.config.n_layer);
  const OffloadPlan base = plan_offload_run(f.config, options, mixed);
  const std::uint64_t block =
      activation_set_bytes(f.config, ActivationSet::all(), options.micro_batch, options.seq, true);
  mixed.activations = parse_activation_request("keep-all", f.config.n_layer);
  mixed.budgets.compute_bytes = base.compute_total + 2 * block;
  mixed.budgets.cpu_bytes = base.cpu_total + 2 * block + 2 * block;
  const OffloadPlan plan = plan_offload_run(f.config, options, mixed);
  MESSAGE(plan.describe());
  REQUIRE(plan.states_in_cpu);
  for (std::size_t l = 0; l < 4; ++l) {
    CAPTURE(l);
    CHECK(plan.activations.tiers[l] == (l >= 2 ? ActivationTier::kCpu : ActivationTier::kStore));
  }
  auto run = [&](const OffloadOptions& offload) {
    OffloadTrainer trainer(f.config, init_model_weights(f.config, 3, at::TensorOptions()), options,
                           offload);
    TrainResult result = trainer.train(f.data.first, f.data.second);
    return std::make_tuple(result, trainer.read_master(), trainer.stats());
  };
  const auto [want, want_master, want_stats] = run(on_gpu);
  const auto [got, got_master, got_stats] = run(mixed);
  REQUIRE(got.losses.size() == want.losses.size());
  check_losses(got, want.losses, 0);
  const double diff = max_relative_difference(got_master, want_master);
  MESSAGE("pinned + store vs on the GPU: " << (got.losses == want.losses ? "same" : "other")
                                           << " losses, master max relative difference " << diff);
  CHECK(diff <= 2e-2);
  CHECK(got_stats.activation_bytes_written == 20 * 2 * plan.activations.store_bytes);
  CHECK(got_stats.activation_bytes_to_cpu ==
        20 * 2 * (plan.activations.cpu_bytes + plan.activations.store_bytes));
  CHECK(got_stats.activation_bytes_from_cpu == got_stats.activation_bytes_to_cpu);
}
