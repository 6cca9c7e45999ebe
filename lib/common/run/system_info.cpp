#include "common/run/system_info.h"

#include <sys/resource.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#ifdef SPARSETRAIN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace sparsetrain::common {

namespace {

// Value of "Key:  123 kB" in a /proc file, in bytes; 0 when absent.
std::uint64_t proc_kib_field(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream fields(line.substr(key.size() + 1));
      std::uint64_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return 0;
}

}  // namespace

CudaInfo cuda_info() {
  CudaInfo info;
#ifdef SPARSETRAIN_HAVE_CUDA
  info.compiled = true;
  cudaRuntimeGetVersion(&info.runtime_version);
  if (cudaDriverGetVersion(&info.driver_version) != cudaSuccess) info.driver_version = 0;
  if (torch::cuda::is_available()) {
    const int n = static_cast<int>(torch::cuda::device_count());
    for (int d = 0; d < n; ++d) {
      cudaDeviceProp prop{};
      if (cudaGetDeviceProperties(&prop, d) == cudaSuccess) {
        info.devices.emplace_back(prop.name);
        info.device_bytes.push_back(prop.totalGlobalMem);
      }
    }
  }
  cudaGetLastError();  // clear the sticky "no device" error for later callers
#endif
  return info;
}

std::string cuda_summary(const CudaInfo& info) {
  if (!info.compiled) return "none";
  std::ostringstream out;
  out << info.runtime_version / 1000 << "." << (info.runtime_version % 1000) / 10;
  if (info.devices.empty()) {
    out << ", no device visible";
  } else {
    out << ", " << info.devices.size() << (info.devices.size() == 1 ? " device (" : " devices (")
        << info.devices.front() << ")";
  }
  return out.str();
}

CpuInfo cpu_info() {
  CpuInfo info;
  info.logical_cores = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (info.model.empty() && line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos)
        info.model = line.substr(line.find_first_not_of(' ', colon + 1));
    }
    if (line.rfind("flags", 0) == 0) {
      std::istringstream flags(line);
      std::string flag;
      while (flags >> flag) {
        info.avx2 |= flag == "avx2";
        info.avx512f |= flag == "avx512f";
        info.avx512bf16 |= flag == "avx512_bf16";
      }
      break;  // every core reports the same flags
    }
  }
  return info;
}

std::uint64_t total_memory_bytes() { return proc_kib_field("/proc/meminfo", "MemTotal"); }
std::uint64_t available_memory_bytes() { return proc_kib_field("/proc/meminfo", "MemAvailable"); }

std::uint64_t peak_rss_bytes() {
  std::uint64_t hwm = proc_kib_field("/proc/self/status", "VmHWM");
  if (hwm == 0) {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    hwm = static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
  }
  return hwm;
}

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

}  // namespace sparsetrain::common
