// adamw_bench: throughput of our fused CPU AdamW (lib/fuyou/optim/cpu_adam.h) side by side, in one
// run, with torch::optim::AdamW and torch's fused CPU AdamW (at::_fused_adamw_, the kernel behind
// torch.optim.AdamW(fused=True)), plus a STREAM triad measuring this machine's memory bandwidth.
// Prints one JSON document (commit, hardware, every parameter, raw samples, medians) on stdout.
//
// Methods (all fp32 master/m/v; one "step" = one update of all n parameters). Two pairings:
//  like for like, fp32 gradients in, nothing out:
//   ours_fp32            our kernel                         logical bytes/param 28 = r 16 (p m v g)
//   + w 12 torch_fused          at::_fused_adamw_                  28 torch_optim
//   torch::optim::AdamW::step()        28 counted (it moves more: temporaries)
//  the step fuyou takes, bf16 gradients in, bf16 weights out:
//   ours_bf16            our kernel, one pass               24 = r 14 (p m v 12, g 2) + w 14 (p m v
//   12, w 2) torch_fused_bf16_io  grad32.copy_(grad16), _fused_adamw_, weights16.copy_(master),
//   into
//                        preallocated tensors               40 = 6 (widen) + 28 + 6 (narrow)
//  and stream_triad (a = b + s*c on doubles, 24 bytes/element), run in the same rounds so that it
//  sees the same machine load; its median GB/s is the bandwidth the others are compared with.
// GB/s = logical bytes/param x n / median seconds (each byte read or written counted once, the
// STREAM convention; write-allocate reads are not counted, here or in the triad).
// Not a test: nothing here asserts timings. Samples of the methods are interleaved so that noise
// from other processes hits all of them alike; report medians and ratios.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <time.h>
#include <torch/optim/adamw.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/run/build_info.h"
#include "common/run/system_info.h"
#include "fuyou/optim/cpu_adam.h"

namespace fuyou = sparsetrain::fuyou;
namespace common = sparsetrain::common;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  const std::size_t k = x.size() / 2;
  return x.size() % 2 ? x[k] : 0.5 * (x[k - 1] + x[k]);
}

// STREAM triad a = b + s*c on doubles, split over threads by at::parallel_for like the kernels.
// Bytes counted: 24 per element (read b, c; write a), the STREAM convention.
struct StreamTriad {
  std::vector<double> a, b, c;
  explicit StreamTriad(std::int64_t n) : a(static_cast<std::size_t>(n)), b(a.size()), c(a.size()) {
    at::parallel_for(0, n, 1 << 16,
                     [&](std::int64_t i0, std::int64_t i1) {  // first touch per thread
                       for (std::int64_t i = i0; i < i1; ++i) a[i] = 0.0, b[i] = 1.0, c[i] = 2.0;
                     });
  }
  void run() {
    const double s = 3.0;
    at::parallel_for(0, static_cast<std::int64_t>(a.size()), 1 << 16,
                     [&](std::int64_t i0, std::int64_t i1) {
                       double* __restrict pa = a.data();
                       const double* __restrict pb = b.data();
                       const double* __restrict pc = c.data();
                       for (std::int64_t i = i0; i < i1; ++i) pa[i] = pb[i] + s * pc[i];
                     });
  }
};

// CPU seconds of the whole process (all threads): on a shared machine, what a step costs in CPU
// time is steadier than its wall time. OpenMP workers that spin at the end of a region count too.
double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Fused CPU AdamW vs torch::optim::AdamW vs torch's fused CPU AdamW (JSON on stdout)"};
  std::int64_t n = 100'000'000;
  int threads = 2;
  int steps = 7;
  std::string isa_name = "auto";
  std::int64_t stream_n = 1 << 25;
  bool skip_torch_optim = false;
  app.add_option("--n", n, "parameters per step")->capture_default_str();
  app.add_option("--threads", threads, "at::set_num_threads for every method")
      ->capture_default_str();
  app.add_option("--steps", steps, "timed steps per method (after one warm-up step)")
      ->capture_default_str();
  app.add_option("--isa", isa_name, "our kernel's ISA")
      ->check(CLI::IsMember({"auto", "scalar", "avx2", "avx512"}))
      ->capture_default_str();
  app.add_option("--stream-n", stream_n, "STREAM triad elements per array (doubles)")
      ->capture_default_str();
  app.add_flag("--skip-torch-optim", skip_torch_optim,
               "leave out torch::optim::AdamW (slow, 2 GB of temporaries)");
  CLI11_PARSE(app, argc, argv);
  const fuyou::CpuIsa isa = isa_name == "scalar"   ? fuyou::CpuIsa::kScalar
                            : isa_name == "avx2"   ? fuyou::CpuIsa::kAvx2
                            : isa_name == "avx512" ? fuyou::CpuIsa::kAvx512
                                                   : fuyou::detect_cpu_isa();
  at::set_num_threads(threads);

  const fuyou::AdamWOptions opt{/*lr=*/1e-4, /*beta1=*/0.9, /*beta2=*/0.95, /*eps=*/1e-8,
                                /*weight_decay=*/0.1};
  std::cerr << "adamw_bench: allocating " << n << " parameters\n";
  at::manual_seed(0);
  // Ours and torch_fused share master/m/v (the values only drift by tiny updates).
  at::Tensor master = at::randn({n}), m = at::zeros({n}), v = at::zeros({n});
  const at::Tensor grad32 = at::randn({n}) * 1e-2;
  const at::Tensor grad16 = grad32.to(at::kBFloat16);
  at::Tensor weights16 = at::empty({n}, at::kBFloat16);
  at::Tensor grad32_widened = at::empty({n});
  at::Tensor fused_step = at::zeros({1});  // _fused_adamw_'s state_steps: the caller increments

  at::Tensor torch_param;
  std::unique_ptr<torch::optim::AdamW> torch_optim;
  if (!skip_torch_optim) {
    torch_param = at::randn({n}).requires_grad_(true);
    torch_param.mutable_grad() = grad32;
    torch_optim = std::make_unique<torch::optim::AdamW>(std::vector<at::Tensor>{torch_param},
                                                        torch::optim::AdamWOptions(opt.lr)
                                                            .betas({opt.beta1, opt.beta2})
                                                            .eps(opt.eps)
                                                            .weight_decay(opt.weight_decay));
  }

  std::int64_t our_step = 0;
  struct Method {
    std::string name;
    int bytes_per_param;
    std::function<void()> run;
    std::vector<double> samples;      // wall seconds per step
    std::vector<double> cpu_samples;  // process CPU seconds per step
  };
  std::vector<Method> methods = {
      {"ours_fp32",
       28,
       [&] { fuyou::adamw_step(opt, ++our_step, master, m, v, grad32, nullptr, isa); },
       {},
       {}},
      {"ours_bf16",
       24,
       [&] { fuyou::adamw_step(opt, ++our_step, master, m, v, grad16, &weights16, isa); },
       {},
       {}},
      {"torch_fused",
       28,
       [&] {
         fused_step.add_(1);
         at::_fused_adamw_({master}, {grad32}, {m}, {v}, {}, {fused_step}, opt.lr, opt.beta1,
                           opt.beta2, opt.weight_decay, opt.eps, /*amsgrad=*/false,
                           /*maximize=*/false);
       },
       {},
       {}},
      {"torch_fused_bf16_io",
       40,
       [&] {
         grad32_widened.copy_(grad16);
         fused_step.add_(1);
         at::_fused_adamw_({master}, {grad32_widened}, {m}, {v}, {}, {fused_step}, opt.lr,
                           opt.beta1, opt.beta2, opt.weight_decay, opt.eps, /*amsgrad=*/false,
                           /*maximize=*/false);
         weights16.copy_(master);
       },
       {},
       {}},
  };
  if (torch_optim) methods.push_back({"torch_optim", 28, [&] { torch_optim->step(); }, {}, {}});
  StreamTriad triad(stream_n);
  methods.push_back({"stream_triad", 24, [&] { triad.run(); }, {}, {}});

  for (auto& method : methods) method.run();  // warm-up: page faults, lazy state, thread pool
  for (int s = 0; s < steps; ++s) {
    for (auto& method : methods) {
      const double t0 = now_s(), c0 = process_cpu_s();
      method.run();
      method.samples.push_back(now_s() - t0);
      method.cpu_samples.push_back(process_cpu_s() - c0);
    }
    std::cerr << "adamw_bench: round " << s + 1 << "/" << steps << " done\n";
  }

  const auto find = [&](const std::string& name) -> const Method& {
    return *std::find_if(methods.begin(), methods.end(),
                         [&](const Method& x) { return x.name == name; });
  };
  nlohmann::json results = nlohmann::json::object();
  std::map<std::string, double> medians;
  for (const auto& method : methods) medians[method.name] = median(method.samples);
  const double triad_bytes = 24.0 * static_cast<double>(stream_n);
  const double triad_gb_per_s = triad_bytes / medians["stream_triad"] / 1e9;
  for (const auto& method : methods) {
    const double med = medians[method.name];
    const double elems =
        method.name == "stream_triad" ? static_cast<double>(stream_n) : static_cast<double>(n);
    const double gb_per_s = elems * method.bytes_per_param / med / 1e9;
    results[method.name] = {{"bytes_per_param", method.bytes_per_param},
                            {"elements", static_cast<std::int64_t>(elems)},
                            {"samples_s", method.samples},
                            {"cpu_samples_s", method.cpu_samples},
                            {"median_s", med},
                            {"median_cpu_s", median(method.cpu_samples)},
                            {"gparam_per_s", elems / med / 1e9},
                            {"gb_per_s", gb_per_s},
                            {"fraction_of_stream_triad", gb_per_s / triad_gb_per_s}};
  }
  // Ratios of medians (> 1: ours faster).
  nlohmann::json speedups = {
      {"ours_fp32_over_torch_fused", medians["torch_fused"] / medians["ours_fp32"]},
      {"ours_bf16_over_torch_fused_bf16_io", medians["torch_fused_bf16_io"] / medians["ours_bf16"]},
      {"ours_bf16_over_torch_fused", medians["torch_fused"] / medians["ours_bf16"]}};
  if (torch_optim)
    speedups["ours_fp32_over_torch_optim"] = medians["torch_optim"] / medians["ours_fp32"];
  const common::CpuInfo cpu = common::cpu_info();
  const common::BuildInfo& build = common::build_info();
  nlohmann::json doc = {
      {"bench", "adamw_bench"},
      {"commit", build.git_commit},
      {"build",
       {{"torch", build.torch_version},
        {"compiler", build.compiler},
        {"build_type", build.build_type}}},
      {"hardware",
       {{"cpu", cpu.model},
        {"logical_cores", cpu.logical_cores},
        {"avx2", cpu.avx2},
        {"avx512f", cpu.avx512f},
        {"avx512bf16", cpu.avx512bf16},
        {"memory_bytes", common::total_memory_bytes()},
        {"host", common::host_name()}}},
      {"parameters",
       {{"n", n},
        {"threads", threads},
        {"timed_steps", steps},
        {"warmup_steps", 1},
        {"isa", fuyou::cpu_isa_name(isa)},
        {"lr", opt.lr},
        {"beta1", opt.beta1},
        {"beta2", opt.beta2},
        {"eps", opt.eps},
        {"weight_decay", opt.weight_decay}}},
      {"bytes_counted",
       "logical bytes read + written once per parameter (STREAM convention, no "
       "write-allocate); torch_optim counted as 28 though its temporaries move more"},
      {"methods", results},
      {"speedups", speedups},
      {"cpu_time_speedups",
       {{"ours_fp32_over_torch_fused",
         median(find("torch_fused").cpu_samples) / median(find("ours_fp32").cpu_samples)},
        {"ours_bf16_over_torch_fused_bf16_io",
         median(find("torch_fused_bf16_io").cpu_samples) / median(find("ours_bf16").cpu_samples)}}},
      // The triad's store into `a` also reads each line first (write-allocate; 32 bytes really
      // move per element), while the AdamW passes update in place or stream their output.
      {"stream_triad_gb_per_s",
       {{"median", triad_gb_per_s},
        {"median_with_write_allocate", triad_gb_per_s * 32.0 / 24.0},
        {"best",
         triad_bytes /
             *std::min_element(methods.back().samples.begin(), methods.back().samples.end()) /
             1e9}}},
  };
  std::cout << doc.dump(2) << std::endl;
  return 0;
}
