// Rate probes for the offload bound (see offload_rates.h).
#include "fuyou/offload/offload_rates.h"

#include <sys/statvfs.h>
#include <torch/torch.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "common/io/aligned_buffer.h"
#include "common/io/io_engine.h"
#include "common/io/ssd_probe.h"
#include "common/log.h"
#include "common/timer.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/optim/cpu_adam.h"

namespace sparsetrain::fuyou {

namespace {

constexpr double kProbeSeconds = 0.15;        // per timed loop
constexpr double kComputeProbeSeconds = 0.3;  // the block's: a noisier machine-wide rate

// FLOP/s of what a training step mostly is: one transformer block's forward, then its backward
// with recompute (block_backward, nothing kept), at the run's [B, T, C], in `options`' device and
// dtype — as DESIGN.md measures "a GPT layer forward+backward" — counted as 6·P_block + 12·C·T per
// token plus the recompute's (block_activations.h), the model's own FLOP formula for a block. One
// warm-up, then at least five passes and kComputeProbeSeconds; the median pass counts. (It was the
// fastest, the machine's best; but the cost model predicts steps, whose GEMMs run at the sustained
// rate: on this 2-core machine the fastest of a 0.15 s probe swung a 350 M model's predicted step
// by 15 % between runs, bench/results/activations/.)
double block_flops_per_s(const ModelConfig& config, const TrainOptions& train,
                         const at::TensorOptions& options, bool cuda) {
  BlockWeights w(static_cast<std::size_t>(block_tensor_count(config)));
  for (int i = 0; i < w.size(); ++i) {
    w[i] = (at::randn(block_tensor_shape(config, i)) * 0.02).to(options);
  }
  const at::Tensor x = at::randn({train.micro_batch, train.seq, config.n_embd}).to(options);
  const at::Tensor g =
      (at::randn({train.micro_batch, train.seq, config.n_embd}) * 1e-3).to(options);
  auto pass = [&] {
    {
      torch::NoGradGuard no_grad;
      at::Tensor y = block_forward(config, w, x);
    }
    BlockGrads grads = block_backward(config, w, x, g);
    if (cuda) torch::cuda::synchronize();
  };
  pass();
  const double per_pass =
      static_cast<double>(train.micro_batch * train.seq) *
      (6.0 * static_cast<double>(config.block_param_count()) +
       12.0 * static_cast<double>(config.n_head * config.head_dim() * train.seq) +
       block_recompute_flops_per_token(config, train.seq, {}, cuda));
  std::vector<double> seconds;
  common::Timer total;
  while (seconds.size() < 5 || total.seconds() < kComputeProbeSeconds) {
    common::Timer timer;
    pass();
    seconds.push_back(timer.seconds());
  }
  std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
  return per_pass / seconds[seconds.size() / 2];
}

double adam_params_per_s(const TrainOptions& train, bool bf16_out) {
  const std::int64_t n = std::int64_t{1} << 22;
  at::Tensor master = at::zeros({n}), m = at::zeros({n}), v = at::zeros({n}), g = at::ones({n});
  at::Tensor out = at::zeros({n}, at::TensorOptions().dtype(at::kBFloat16));
  at::Tensor* out_ptr = bf16_out ? &out : nullptr;
  adamw_step(train.adam, 1, master, m, v, g, out_ptr, train.isa);  // warm-up (page faults)
  double best = 1e300;  // the fastest call, as for the compute probe
  common::Timer total;
  for (std::int64_t step = 2; step < 5 || total.seconds() < kProbeSeconds; ++step) {
    common::Timer timer;
    adamw_step(train.adam, step, master, m, v, g, out_ptr, train.isa);
    best = std::min(best, timer.seconds());
  }
  return static_cast<double>(n) / best;
}

}  // namespace

OffloadRates measure_cpu_rates(const ModelConfig& config, const TrainOptions& train,
                               OffloadRates base) {
  base.compute_flops_per_s =
      block_flops_per_s(config, train, at::TensorOptions().dtype(at::kFloat), false);
  base.cpu_adam_params_per_s = adam_params_per_s(train, /*bf16_out=*/false);
  base.pcie_h2d_bytes_per_s = 0;
  base.pcie_d2h_bytes_per_s = 0;
  return base;
}

OffloadRates reference_cuda_rates() {
  OffloadRates r;
  r.compute_flops_per_s = 6.79e14;
  r.cpu_adam_params_per_s = 6.51e9;
  r.pcie_h2d_bytes_per_s = 5.50e10;
  r.pcie_d2h_bytes_per_s = 5.48e10;
  r.ssd_read_bytes_per_s = 2.33e9;
  r.ssd_write_bytes_per_s = 2.49e9;
  r.ssd_mixed_bytes_per_s = 2.45e9;
  r.stream_convert_params_per_s = 0;
  return r;
}

OffloadRates measure_cuda_rates(const ModelConfig& config, const TrainOptions& train,
                                OffloadRates base) {
  if (!torch::cuda::is_available()) {
    throw common::EnvironmentError("--device cuda: no CUDA device is visible",
                                   "run on a GPU machine or pass --device cpu");
  }
  base.compute_flops_per_s = block_flops_per_s(
      config, train, at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA), true);
  base.cpu_adam_params_per_s = adam_params_per_s(train, /*bf16_out=*/true);
  // Pinned copies of 256 MiB, as the trainer's slots are pinned.
  const std::int64_t n = std::int64_t{64} << 20;  // floats
  const at::Tensor host = at::ones({n}).pin_memory();
  const at::Tensor device = at::empty({n}, at::TensorOptions().device(at::kCUDA));
  auto rate = [&](const at::Tensor& dst, const at::Tensor& src) {
    const_cast<at::Tensor&>(dst).copy_(src, /*non_blocking=*/true);  // warm-up
    torch::cuda::synchronize();
    double bytes = 0;
    common::Timer timer;
    while (timer.seconds() < kProbeSeconds) {
      const_cast<at::Tensor&>(dst).copy_(src, /*non_blocking=*/true);
      torch::cuda::synchronize();
      bytes += 4.0 * static_cast<double>(n);
    }
    return bytes / timer.seconds();
  };
  base.pcie_h2d_bytes_per_s = rate(device, host);
  base.pcie_d2h_bytes_per_s = rate(host, device);
  // The streamed blocks' fp32 -> bf16 conversion (cuda_transfer.h), from and to ordinary memory.
  std::vector<std::uint16_t> bf16(static_cast<std::size_t>(n));
  const float* src = host.data_ptr<float>();
  fp32_to_bf16_rne(src, bf16.data(), n);  // warm-up (pages)
  double params = 0;
  common::Timer timer;
  while (timer.seconds() < kProbeSeconds) {
    fp32_to_bf16_rne(src, bf16.data(), n);
    params += static_cast<double>(n);
  }
  base.stream_convert_params_per_s = params / timer.seconds();
  return base;
}

OffloadRates measure_ssd_rates(const std::vector<std::string>& dirs, OffloadRates base,
                               std::uint64_t bytes_per_dir) {
  namespace io = common::io;
  if (dirs.empty()) return base;
  std::uint64_t bytes = bytes_per_dir;
  for (const std::string& dir : dirs) {
    struct statvfs st {};
    if (::statvfs(dir.c_str(), &st) != 0) return base;
    bytes =
        std::min<std::uint64_t>(bytes, static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize / 8);
  }
  bytes = bytes / io::kIoAlignment * io::kIoAlignment;
  if (bytes < (std::uint64_t{64} << 20)) {
    common::log_warn(
        "SSD rate probe skipped: under 64 MiB free per --ssd directory; the bound uses "
        "DESIGN.md's rates");
    return base;
  }
  try {
    io::IoOptions probe_options;
    probe_options.faults = false;  // a measurement: injected faults are for the store's data
    auto engine = io::IoEngine::create(probe_options, dirs);
    const io::SsdProbeShape shape =
        io::fit_ssd_probe(bytes, io::kDefaultProbeStripeBytes, engine->options().block_bytes);
    io::SsdProbe probe(*engine, dirs, shape, "rate-probe");
    const io::ProbeTargetRate rate = probe.run(probe.create_files(""));
    base.ssd_write_bytes_per_s = rate.write.bytes_per_s();
    // Reads of a file that was not opened O_DIRECT come from the page cache: not the disk's rate.
    if (probe.direct()) {
      base.ssd_read_bytes_per_s = rate.read.bytes_per_s();
      base.ssd_mixed_bytes_per_s = rate.read_write.bytes_per_s();
    }
  } catch (const common::Error& e) {
    common::log_warn("SSD rate probe failed (", e.what(), "); the bound uses DESIGN.md's rates");
  }
  return base;
}

void to_json(nlohmann::json& j, const OffloadRates& rates) {
  j = {{"compute_flops_per_s", rates.compute_flops_per_s},
       {"ssd_read_bytes_per_s", rates.ssd_read_bytes_per_s},
       {"ssd_write_bytes_per_s", rates.ssd_write_bytes_per_s},
       {"ssd_mixed_bytes_per_s", rates.ssd_mixed_bytes_per_s},
       {"cpu_adam_params_per_s", rates.cpu_adam_params_per_s},
       {"pcie_h2d_bytes_per_s", rates.pcie_h2d_bytes_per_s},
       {"pcie_d2h_bytes_per_s", rates.pcie_d2h_bytes_per_s},
       {"stream_convert_params_per_s", rates.stream_convert_params_per_s}};
}

}  // namespace sparsetrain::fuyou
