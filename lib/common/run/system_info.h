// Facts about the machine the process runs on, for --version, `sparsetrain env` and run records:
// CPU instruction sets, cores, memory, CUDA (compiled in? devices visible?), peak RSS.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sparsetrain::common {

struct CudaInfo {
  bool compiled = false;                    // built against a LibTorch with CUDA
  int runtime_version = 0;                  // e.g. 13000 for 13.0; 0 when not compiled
  int driver_version = 0;                   // 0 when no driver is installed
  std::vector<std::string> devices;         // names of visible devices ("NVIDIA H100 80GB HBM3")
  std::vector<std::uint64_t> device_bytes;  // total memory per device
};

struct CpuInfo {
  std::string model;      // /proc/cpuinfo "model name"
  int logical_cores = 0;  // online CPUs
  bool avx2 = false;
  bool avx512f = false;
  bool avx512bf16 = false;
};

CudaInfo cuda_info();
// "13.0, 1 device (NVIDIA H100 80GB HBM3)", "13.0, no device visible", or "none".
std::string cuda_summary(const CudaInfo& info);
CpuInfo cpu_info();
std::uint64_t total_memory_bytes();      // MemTotal
std::uint64_t available_memory_bytes();  // MemAvailable
std::uint64_t peak_rss_bytes();          // VmHWM of this process
std::string host_name();

}  // namespace sparsetrain::common
