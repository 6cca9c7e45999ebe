// huge_page_gather_bench: random gathers from a large float64 array on ordinary 4 KiB pages against
// the same array on transparent huge pages (common/huge_page_allocator.h), in one run — the
// measurement behind putting TEDDY's node-factor arrays on huge pages
// (lib/teddy/prune/edge_scorer.cpp). The index stream is skewed like a power-law graph's neighbour
// lists (index = r²/n for uniform r, so low ids are hit most) and is the same for both arrays.
// Samples alternate between the two so that machine noise hits both alike; report the ratio of
// medians. Prints one JSON document (commit, hardware, every parameter, raw samples, medians) on
// stdout. Not a test: nothing here asserts timings.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/huge_page_allocator.h"
#include "common/run/build_info.h"
#include "common/run/system_info.h"

namespace common = sparsetrain::common;

namespace {

constexpr const char* kUsage =
    "usage: huge_page_gather_bench [--nodes-log2 K] [--gathers N] [--repeats R] [--threads T]\n"
    "Gathers N skewed random doubles from an array of 2^K on 4 KiB pages and on huge pages,\n"
    "alternating, and prints JSON (defaults: K 24 = TEDDY's 10^8-edge R-MAT graph, N 2e8, R 5).\n"
    "Examples:\n"
    "  huge_page_gather_bench > bench/results/huge_page_gather.json\n"
    "  huge_page_gather_bench --nodes-log2 20 --gathers 1e8 --threads 1\n";

// The whole of `text` as a number ("2e8" allowed), or nothing.
bool parse_number(const std::string& text, double& out) {
  try {
    std::size_t used = 0;
    out = std::stod(text, &used);
    return used == text.size();
  } catch (const std::exception&) {
    return false;
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Seconds for one pass of gathers; `sink` keeps the sum alive.
template <typename Array>
double time_gathers(const Array& a, const std::vector<std::uint32_t>& idx, double& sink) {
  const auto t0 = std::chrono::steady_clock::now();
  double sum = 0;
  const auto m = static_cast<std::int64_t>(idx.size());
#pragma omp parallel for schedule(static) reduction(+ : sum)
  for (std::int64_t i = 0; i < m; ++i) sum += a[idx[static_cast<std::size_t>(i)]];
  sink += sum;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string thp_mode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode;
  std::getline(in, mode);
  return mode;
}

}  // namespace

int main(int argc, char** argv) {
  int nodes_log2 = 24, repeats = 5, threads = 0;
  double gathers = 2e8;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "huge_page_gather_bench: error: " << flag << " needs a value\n" << kUsage;
      return 2;
    }
    const std::string value = argv[++i];
    double number = 0;
    if (!parse_number(value, number)) {
      std::cerr << "huge_page_gather_bench: error: " << flag << " expects a number, got '" << value
                << "'\n"
                << kUsage;
      return 2;
    }
    if (flag == "--nodes-log2") {
      nodes_log2 = static_cast<int>(number);
    } else if (flag == "--gathers") {
      gathers = number;
    } else if (flag == "--repeats") {
      repeats = static_cast<int>(number);
    } else if (flag == "--threads") {
      threads = static_cast<int>(number);
    } else {
      std::cerr << "huge_page_gather_bench: error: unknown argument '" << flag << "'\n" << kUsage;
      return 2;
    }
  }
  if (nodes_log2 < 10 || nodes_log2 > 31 || !(gathers >= 1 && gathers <= 4e9) || repeats < 1 ||
      threads < 0) {
    std::cerr << "huge_page_gather_bench: error: need 10 <= K <= 31, 1 <= N <= 4e9, R >= 1, "
                 "T >= 0\n";
    return 2;
  }
  if (threads > 0) omp_set_num_threads(threads);
  const std::uint64_t n = std::uint64_t{1} << nodes_log2;
  const auto m = static_cast<std::uint64_t>(gathers);

  std::vector<double> small_pages(n);
  common::HugePageVector<double> huge_pages(n);
  for (std::uint64_t i = 0; i < n; ++i) small_pages[i] = huge_pages[i] = 1.0 / double(i + 1);
  std::vector<std::uint32_t> idx(m);
  std::uint64_t x = 88172645463325252ULL;  // xorshift64
  for (std::uint64_t i = 0; i < m; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const std::uint64_t r = x % n;
    idx[i] = static_cast<std::uint32_t>(r * r / n);
  }

  std::vector<double> small_s, huge_s;
  double sink = 0;
  for (int r = 0; r < repeats; ++r) {
    small_s.push_back(time_gathers(small_pages, idx, sink));
    huge_s.push_back(time_gathers(huge_pages, idx, sink));
  }
  const auto& build = common::build_info();
  const auto cpu = common::cpu_info();
  const double small_rate = double(m) / median(small_s), huge_rate = double(m) / median(huge_s);
  nlohmann::json doc = {{"benchmark", "huge_page_gather"},
                        {"commit", build.git_commit},
                        {"build_type", build.build_type},
                        {"hardware",
                         {{"cpu", cpu.model},
                          {"logical_cores", cpu.logical_cores},
                          {"memory_bytes", common::total_memory_bytes()},
                          {"transparent_hugepage", thp_mode()}}},
                        {"parameters",
                         {{"array_doubles", n},
                          {"gathers", m},
                          {"repeats", repeats},
                          {"threads", omp_get_max_threads()},
                          {"index", "r*r/n, r uniform in [0, n) (xorshift64): skewed to low ids"}}},
                        {"samples", {{"pages_4k_s", small_s}, {"huge_pages_s", huge_s}}},
                        {"median",
                         {{"pages_4k_gathers_per_s", small_rate},
                          {"huge_pages_gathers_per_s", huge_rate},
                          {"huge_over_4k", huge_rate / small_rate}}},
                        {"checksum", sink}};
  std::cout << doc.dump(2) << "\n";
  return 0;
}
