// fuyou_grad_store_bench: what keeping the streamed blocks' gradient accumulators in the store
// (offload_plan.h: block_grads_in_store, the plan when --cpu-mem cannot hold them) costs against
// keeping them in RAM, side by side in one run, on the CPU tier running the CUDA tier's gradient
// drain (OffloadOptions::block_grads_in_cpu: each block's gradients leave the compute tier after
// its backward, as on a GPU). Both variants: blocks streamed through the fewest compute slots the
// planner accepts, states in the store, clipping on (updates wait for the global norm), the same
// measured rates for the bound. The variants alternate within each round so that machine noise hits
// both alike; report medians and their ratio. Prints one JSON document on stdout. Needs about
// 24 B + 8 B per block parameter of free disk in --ssd.
//   fuyou_grad_store_bench --ssd DIR [--model custom:L=8,C=1024,H=16,V=256,T=128] [--rounds 3]
#include <ATen/ATen.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/run/build_info.h"
#include "common/run/system_info.h"
#include "fuyou/model/demo_text.h"
#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/model/token_data.h"
#include "fuyou/offload/offload_rates.h"
#include "fuyou/offload/offload_trainer.h"

namespace fuyou = sparsetrain::fuyou;
namespace common = sparsetrain::common;

namespace {

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const std::size_t k = x.size() / 2;
  return x.size() % 2 ? x[k] : 0.5 * (x[k - 1] + x[k]);
}

// The smallest compute-tier budget the planner accepts with the block inputs kept there: two
// streamed slots (bisection over the pure-arithmetic plan).
std::uint64_t smallest_compute_budget(const fuyou::ModelConfig& config,
                                      const fuyou::TrainOptions& train,
                                      fuyou::OffloadOptions offload) {
  offload.budgets.compute_bytes = 0;
  std::uint64_t hi = fuyou::plan_offload_run(config, train, offload).compute_total, lo = 1;
  while (lo < hi) {
    const std::uint64_t mid = lo + (hi - lo) / 2;
    offload.budgets.compute_bytes = mid;
    bool fits = false;
    try {
      fits = !fuyou::plan_offload_run(config, train, offload).inputs_in_store;
    } catch (const common::UsageError&) {
    }
    (fits ? hi : lo) = fits ? mid : mid + 1;
  }
  return lo;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Gradient accumulators in the store vs in RAM (Fuyou offloaded trainer, CPU tier)"};
  std::string model = "custom:L=8,C=1024,H=16,V=256,T=128", ssd;
  int rounds = 3;
  fuyou::TrainOptions train;
  train.steps = 3;
  train.micro_batch = 1;
  train.seq = 128;
  train.grad_clip = 1.0;
  train.eval_every = 0;
  train.eval_batches = 1;
  train.lr = 1e-4;
  app.add_option("--model", model, "Model name or custom:L=…,C=…,H=…,V=…,T=…");
  app.add_option("--ssd", ssd, "Directory for the stores (one per run, removed after)")->required();
  app.add_option("--rounds", rounds, "Rounds; each runs both variants")->check(CLI::PositiveNumber);
  app.add_option("--steps", train.steps, "Steps per run")->check(CLI::PositiveNumber);
  app.add_option("--micro-batch", train.micro_batch)->check(CLI::PositiveNumber);
  app.add_option("--seq", train.seq)->check(CLI::PositiveNumber);
  app.add_option("--accum", train.accum, "Micro-batches per step (K)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    const fuyou::ModelConfig config = fuyou::model_config_from_name(model);
    const auto data = fuyou::TokenData::from_bytes(std::string(fuyou::demo_text())).split(0.1);
    std::filesystem::create_directories(ssd);

    fuyou::OffloadOptions base;
    base.ssd_dirs = {ssd};
    base.block_grads_in_cpu = true;
    base.rates = fuyou::measure_ssd_rates({ssd}, fuyou::measure_cpu_rates(config, train));
    base.budgets.cpu_bytes = std::uint64_t{1} << 40;
    base.budgets.compute_bytes = smallest_compute_budget(config, train, base);

    // --cpu-mem for each variant: two state staging slots plus the accumulators in RAM, or plus
    // the store variant's three gradient piece buffers.
    const fuyou::OffloadPlan roomy = fuyou::plan_offload_run(config, train, base);
    const std::uint64_t staging = 24 * static_cast<std::uint64_t>(roomy.largest_piece_floats);
    const std::uint64_t block_piece = static_cast<std::uint64_t>(
        std::min<std::int64_t>(roomy.state_piece_floats, fuyou::unit_padded_params(config, 1)));
    struct Variant {
      std::string name;
      std::uint64_t cpu_bytes;
      bool in_store;
      std::vector<double> step_seconds;
      nlohmann::json runs = nlohmann::json::array();
    };
    std::vector<Variant> variants(2);
    variants[0].name = "ram";
    variants[0].cpu_bytes =
        staging + 4 * static_cast<std::uint64_t>(config.n_layer * config.block_param_count());
    variants[0].in_store = false;
    variants[1].name = "store";
    variants[1].cpu_bytes = staging + 12 * block_piece;
    variants[1].in_store = true;
    for (int round = 0; round < rounds; ++round) {
      for (std::size_t i = 0; i < variants.size(); ++i) {
        Variant& v = variants[(i + static_cast<std::size_t>(round)) % variants.size()];
        fuyou::OffloadOptions offload = base;
        offload.budgets.cpu_bytes = v.cpu_bytes;
        offload.ssd_dirs = {ssd + "/" + v.name + "-" + std::to_string(round)};
        std::filesystem::create_directories(offload.ssd_dirs[0]);
        nlohmann::json run;
        {
          fuyou::OffloadTrainer trainer(config, fuyou::init_model_weights(config, 3, {}), train,
                                        offload);
          const fuyou::OffloadPlan& plan = trainer.plan();
          if (plan.states_in_cpu || plan.block_grads_in_store != v.in_store) {
            throw common::RunError("the " + v.name + " variant did not get its plan", "");
          }
          const fuyou::TrainResult result = trainer.train(data.first, data.second);
          const fuyou::OffloadStats& stats = trainer.stats();
          v.step_seconds.push_back(stats.step_seconds);
          run = {{"round", round},
                 {"step_seconds", stats.step_seconds},
                 {"bound_seconds", plan.bound_seconds},
                 {"binding", plan.binding},
                 {"measured_over_bound", stats.step_seconds / plan.bound_seconds},
                 {"cpu_bytes", plan.cpu_total},
                 {"ssd_read_bytes_per_step", stats.ssd_read_bytes / stats.steps},
                 {"ssd_write_bytes_per_step", stats.ssd_write_bytes / stats.steps},
                 {"planned_ssd_read_bytes", plan.ssd_read_bytes},
                 {"planned_ssd_write_bytes", plan.ssd_write_bytes},
                 {"losses", result.losses},
                 {"optimizer_phases_s", stats.optimizer_phases.all()},
                 {"compute_phases_s", stats.compute_phases.all()}};
        }
        std::filesystem::remove_all(offload.ssd_dirs[0]);
        v.runs.push_back(run);
        std::cerr << v.name << " round " << round << ": " << run["step_seconds"] << " s/step\n";
      }
    }
    nlohmann::json results = nlohmann::json::object();
    for (const Variant& v : variants) {
      results[v.name] = {{"cpu_mem_bytes", v.cpu_bytes},
                         {"median_step_seconds", median(v.step_seconds)},
                         {"runs", v.runs}};
    }
    const common::CpuInfo cpu = common::cpu_info();
    const common::BuildInfo& build = common::build_info();
    nlohmann::json doc = {
        {"bench", "fuyou_grad_store_bench"},
        {"commit", build.git_commit},
        {"build", {{"torch", build.torch_version}, {"build_type", build.build_type}}},
        {"hardware",
         {{"cpu", cpu.model},
          {"logical_cores", cpu.logical_cores},
          {"memory_bytes", common::total_memory_bytes()},
          {"host", common::host_name()}}},
        {"parameters",
         {{"model", model},
          {"params", config.param_count()},
          {"steps", train.steps},
          {"micro_batch", train.micro_batch},
          {"seq", train.seq},
          {"accum", train.accum},
          {"grad_clip", train.grad_clip},
          {"compute_budget_bytes", base.budgets.compute_bytes},
          {"stream_slots", roomy.stream_slots},
          {"rounds", rounds}}},
        {"rates",
         {{"ssd_read_bytes_per_s", base.rates.ssd_read_bytes_per_s},
          {"ssd_write_bytes_per_s", base.rates.ssd_write_bytes_per_s},
          {"ssd_mixed_bytes_per_s", base.rates.ssd_mixed_bytes_per_s},
          {"compute_flops_per_s", base.rates.compute_flops_per_s},
          {"cpu_adam_params_per_s", base.rates.cpu_adam_params_per_s}}},
        {"results", results},
        {"store_over_ram_step_time",
         median(variants[1].step_seconds) / median(variants[0].step_seconds)}};
    std::cout << doc.dump(2) << "\n";
    return 0;
  } catch (const common::Error& e) {
    std::cerr << "fuyou_grad_store_bench: " << e.what() << "\n";
    return 2;
  }
}
