// Rate probes for the offload bound (see offload_rates.h).
#include "fuyou/offload/offload_rates.h"

#include <sys/statvfs.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>

#include "common/io/aligned_buffer.h"
#include "common/io/io_engine.h"
#include "common/log.h"
#include "common/timer.h"
#include "fuyou/optim/cpu_adam.h"
#include "fuyou/offload/cuda_transfer.h"
#include "fuyou/model/gpt_model.h"

namespace sparsetrain::fuyou {

namespace {

constexpr double kProbeSeconds = 0.15;  // per timed loop

// FLOP/s of what a training step mostly is: one transformer block's forward, then its backward
// with recompute (block_backward), at the run's [B, T, C], in `options`' device and dtype — as
// DESIGN.md measures "a GPT layer forward+backward" — counted as 8·P_block + 16·C·T per token,
// the model's own FLOP formula for a block. One warm-up, then at least three passes and
// kProbeSeconds; the fastest pass counts (a lower bound wants the machine's best: other processes
// only ever slow a pass down).
double block_flops_per_s(const ModelConfig& config, const TrainOptions& train,
                         const at::TensorOptions& options, bool cuda) {
  BlockWeights w;
  for (int i = 0; i < kBlockTensorCount; ++i) {
    w[i] = (at::randn(block_tensor_shape(config, i)) * 0.02).to(options);
  }
  const at::Tensor x = at::randn({train.micro_batch, train.seq, config.n_embd}).to(options);
  const at::Tensor g = (at::randn({train.micro_batch, train.seq, config.n_embd}) * 1e-3).to(options);
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
      (8.0 * static_cast<double>(config.block_param_count()) +
       16.0 * static_cast<double>(config.n_embd * train.seq));
  double best = 1e300;
  common::Timer total;
  for (int passes = 0; passes < 3 || total.seconds() < kProbeSeconds; ++passes) {
    common::Timer timer;
    pass();
    best = std::min(best, timer.seconds());
  }
  return per_pass / best;
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
    bytes = std::min<std::uint64_t>(bytes, static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize / 8);
  }
  bytes = bytes / io::kIoAlignment * io::kIoAlignment;
  if (bytes < (std::uint64_t{64} << 20)) {
    common::log_warn("SSD rate probe skipped: under 64 MiB free per --ssd directory; the bound uses "
                     "DESIGN.md's rates");
    return base;
  }
  std::vector<std::string> paths, mixed_paths;
  for (const std::string& dir : dirs) {
    paths.push_back(dir + "/.sparsetrain-rate-probe");
    mixed_paths.push_back(dir + "/.sparsetrain-rate-probe-2");
  }
  try {
    auto engine = io::IoEngine::create({}, dirs);
    io::AlignedBuffer buffer(bytes, /*pin=*/false);
    std::fill_n(buffer.data(), buffer.size(), std::byte{0x5a});  // not all zeros
    io::AlignedBuffer second(bytes, /*pin=*/false);
    std::vector<io::FileId> files, mixed_files;
    for (const std::string& path : paths) files.push_back(engine->open_file(path, io::OpenMode::kCreate));
    for (const std::string& path : mixed_paths) {
      mixed_files.push_back(engine->open_file(path, io::OpenMode::kCreate));
    }
    auto requests = [&](io::IoOp op, const std::vector<io::FileId>& list_of, std::byte* data) {
      std::vector<io::IoRequest> list;
      for (io::FileId file : list_of) list.push_back({op, file, 0, data, bytes});
      return list;
    };
    for (io::FileId file : files) engine->allocate(file, 0, bytes);
    for (io::FileId file : mixed_files) engine->allocate(file, 0, bytes);
    common::Timer write_timer;
    engine->run(requests(io::IoOp::kWrite, files, buffer.data()));
    for (io::FileId file : files) engine->sync(file);
    const double write_s = write_timer.seconds();
    common::Timer read_timer;
    engine->run(requests(io::IoOp::kRead, files, buffer.data()));
    const double read_s = read_timer.seconds();
    common::Timer mixed_timer;
    auto reading = engine->submit(requests(io::IoOp::kRead, files, second.data()));
    engine->run(requests(io::IoOp::kWrite, mixed_files, buffer.data()));
    reading.get();
    for (io::FileId file : mixed_files) engine->sync(file);
    const double mixed_s = mixed_timer.seconds();
    const bool direct = engine->is_direct(files[0]);
    for (io::FileId file : files) engine->close_file(file);
    for (io::FileId file : mixed_files) engine->close_file(file);
    const double total = static_cast<double>(bytes * files.size());
    if (direct) base.ssd_mixed_bytes_per_s = 2 * total / std::max(mixed_s, 1e-9);
    base.ssd_write_bytes_per_s = total / std::max(write_s, 1e-9);
    // Reads of a file that was not opened O_DIRECT come from the page cache: not the disk's rate.
    if (direct) base.ssd_read_bytes_per_s = total / std::max(read_s, 1e-9);
  } catch (const common::Error& e) {
    common::log_warn("SSD rate probe failed (", e.what(), "); the bound uses DESIGN.md's rates");
  }
  for (const std::string& path : paths) ::unlink(path.c_str());
  for (const std::string& path : mixed_paths) ::unlink(path.c_str());
  return base;
}

}  // namespace sparsetrain::fuyou
