// RankGroup: the ranks of a data-parallel run over torch's c10d — rendezvous through a TCPStore
// on rank 0 (MASTER_ADDR:MASTER_PORT), collectives through c10d's Gloo process group (CPU
// tensors; CUDA ones are staged through the host by Gloo). It is the RankReduction the trainers
// take (train/data_parallel.h) and it carries the small exchanges a launch needs: one config
// checked equal on every rank, strings gathered to rank 0.
// The c10d headers stay in rank_group.cpp.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "fuyou/dist/world.h"
#include "fuyou/train/data_parallel.h"

namespace sparsetrain::fuyou {

struct RankGroupOptions {
  // "gloo"; "nccl" is refused by this build (EnvironmentError), anything else is a UsageError.
  std::string backend = "gloo";
  // The rendezvous (every rank connects to rank 0's store) and each collective: a rank that
  // stopped makes the others fail after this long instead of waiting forever.
  std::chrono::milliseconds timeout = std::chrono::minutes(5);
};

class RankGroup final : public RankReduction {
 public:
  // Connects this rank (blocking until every rank has). EnvironmentError naming MASTER_ADDR:
  // MASTER_PORT when rank 0's store cannot be reached within the timeout (or, on rank 0, its port
  // cannot be bound).
  static std::shared_ptr<RankGroup> connect(const World& world, const RankGroupOptions& options);
  ~RankGroup() override;
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  int rank() const override;
  int size() const override;
  // Collectives (RunError naming this rank when one fails: a rank stopped, or timed out).
  void sum(const std::vector<at::Tensor>& tensors) override;
  double sum(double value) override;

  // Every rank publishes `value` under `what`; UsageError on every rank when any rank's differs
  // from rank 0's, naming the first such rank (e.g. the flags each rank was started with), with
  // `hint`.
  void check_same(const std::string& what, const std::string& value,
                  const std::string& hint =
                      "start every rank with the same command (per-rank "
                      "paths through {rank} in --ssd)");
  // Every rank's `value` for `what`, in rank order, on every rank.
  std::vector<std::string> exchange(const std::string& what, const std::string& value);
  // Every rank's `value` for `what`, in rank order, on rank 0; empty on the others.
  std::vector<std::string> gather_to_first(const std::string& what, const std::string& value);

 private:
  struct Impl;
  explicit RankGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparsetrain::fuyou
