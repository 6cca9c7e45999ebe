// Helpers shared by the offloaded trainer's CPU tests (tests/fuyou/offload) and its CUDA tests
// (tests/gpu): store options over two striped directories, the largest relative difference of two
// sets of weights, and a run stopped after a given step as a killed run would stop. Not a fixture:
// each test keeps its own model, options, budgets and tolerances.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>

#include "fuyou/model/model_weights.h"
#include "fuyou/model/token_data.h"
#include "fuyou/offload/offload_trainer.h"
#include "fuyou/train/in_memory_trainer.h"

namespace offload_test {

// Offload options whose store stripes over the directories `root`/a and `root`/b (created), with
// `cpu_bytes` of CPU budget and 64 KiB extents; the caller empties `root` first.
inline sparsetrain::fuyou::OffloadOptions striped_store_options(const std::filesystem::path& root,
                                                                std::uint64_t cpu_bytes) {
  sparsetrain::fuyou::OffloadOptions o;
  for (const char* sub : {"a", "b"}) {
    std::filesystem::create_directories(root / sub);
    o.ssd_dirs.push_back((root / sub).string());
  }
  o.budgets.cpu_bytes = cpu_bytes;
  o.store_extent_bytes = 64 << 10;
  return o;
}

// Whether two sets of weights hold the same tensors, by name, bit for bit.
inline bool bitwise_equal(const sparsetrain::fuyou::ModelWeights& a,
                          const sparsetrain::fuyou::ModelWeights& b) {
  auto na = a.named();
  auto nb = b.named();
  if (na.size() != nb.size()) return false;
  for (std::size_t i = 0; i < na.size(); ++i) {
    if (na[i].first != nb[i].first || !at::equal(*na[i].second, *nb[i].second)) return false;
  }
  return true;
}

// Max |a - b| / max |b| over all tensors, compared as fp32 on the CPU (0 when bitwise equal; the
// conversion is a no-op for fp32 CPU weights).
inline double max_relative_difference(const sparsetrain::fuyou::ModelWeights& a,
                                      const sparsetrain::fuyou::ModelWeights& b) {
  auto na = a.named();
  auto nb = b.named();
  double worst = 0;
  for (std::size_t i = 0; i < na.size(); ++i) {
    const at::Tensor x = na[i].second->to(at::kCPU, at::kFloat);
    const at::Tensor y = nb[i].second->to(at::kCPU, at::kFloat);
    const double scale = std::max(y.abs().max().item<double>(), 1e-30);
    worst = std::max(worst, (x - y).abs().max().item<double>() / scale);
  }
  return worst;
}

// Trains `trainer` and stops it by an exception from the step report of `stop_step` (that is,
// after the step and its commit, if it commits); fails the test if training ends before.
inline void train_and_stop_after(sparsetrain::fuyou::OffloadTrainer& trainer,
                                 const sparsetrain::fuyou::TokenData& train_data,
                                 const sparsetrain::fuyou::TokenData& valid_data,
                                 std::int64_t stop_step) {
  struct Stop {};
  try {
    trainer.train(train_data, valid_data, [stop_step](const sparsetrain::fuyou::StepReport& r) {
      if (r.step == stop_step) throw Stop{};
    });
    FAIL("the stop did not happen");
  } catch (const Stop&) {
  }
}

}  // namespace offload_test
