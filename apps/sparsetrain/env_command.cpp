// `sparsetrain env`: what this machine offers sparsetrain — CPU instruction sets, memory, torch
// threads, CUDA devices, io_uring, and O_DIRECT on the directories you plan to use. Attach its
// --out JSON to bug reports; fuyou's planner uses the same facts.
#include <ATen/Parallel.h>

#include <iostream>

#include "cli.h"
#include "common/io/probe.h"
#include "common/run/build_info.h"
#include "common/run/system_info.h"
#include "common/units.h"

namespace sparsetrain::cli {

namespace {

struct EnvOptions {
  std::vector<std::string> dirs{"."};
};

void run_env(const EnvOptions& options, CommandContext& context) {
  namespace io = common::io;
  const common::CpuInfo cpu = common::cpu_info();
  const common::CudaInfo cuda = common::cuda_info();
  const io::ProbeResult uring = io::probe_io_uring();

  nlohmann::json& m = context.record.metrics();
  m["cpu"] = {{"model", cpu.model},
              {"logical_cores", cpu.logical_cores},
              {"avx2", cpu.avx2},
              {"avx512f", cpu.avx512f},
              {"avx512bf16", cpu.avx512bf16}};
  m["memory_bytes"] = common::total_memory_bytes();
  m["torch_threads"] = at::get_num_threads();
  m["cuda"] = {{"compiled", cuda.compiled},
               {"runtime_version", cuda.runtime_version},
               {"devices", cuda.devices}};
  m["io_uring"] = {{"ok", uring.ok}, {"detail", uring.detail}};

  std::cout << "cpu        " << cpu.model << ", " << cpu.logical_cores << " logical cores, "
            << (cpu.avx512f ? "AVX-512"
                : cpu.avx2  ? "AVX2"
                            : "no AVX2")
            << (cpu.avx512bf16 ? " with BF16" : "") << "\n"
            << "memory     " << common::format_bytes(common::total_memory_bytes()) << " total, "
            << common::format_bytes(common::available_memory_bytes()) << " available\n"
            << "torch      " << common::build_info().torch_version << ", " << at::get_num_threads()
            << " threads\n"
            << "cuda       " << common::cuda_summary(cuda) << "\n"
            << "io_uring   " << (uring.ok ? "yes" : "no (" + uring.detail + ")") << "\n";

  nlohmann::json dirs = nlohmann::json::array();
  for (const std::string& dir : options.dirs) {
    const io::ProbeResult direct = io::probe_o_direct(dir);
    dirs.push_back({{"dir", dir}, {"o_direct", direct.ok}, {"detail", direct.detail}});
    std::cout << "o_direct   " << dir << ": " << (direct.ok ? "yes" : "no (" + direct.detail + ")")
              << "\n";
  }
  m["dirs"] = std::move(dirs);
}

}  // namespace

void add_env_command(CLI::App& app) {
  auto options = std::make_shared<EnvOptions>();
  CLI::App* env = app.add_subcommand(
      "env", "Report what this machine offers: CPU, memory, CUDA, io_uring, O_DIRECT");
  env->add_option("--dir", options->dirs, "Directories to probe for O_DIRECT (repeatable)")
      ->check(CLI::ExistingDirectory);
  set_command_runner(env, [options](CommandContext& context) { run_env(*options, context); });
}

}  // namespace sparsetrain::cli
