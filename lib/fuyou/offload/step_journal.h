// The one-slot store's step journal (plan store_slots == 1: the states are updated in place, so a
// crash mid-update cannot fall back to the last commit; it rolls forward instead). A step's
// updates start only once its gradients are on disk (the block accumulators "grads.<l>" and the
// embeddings' and ln_f's "step_grads.<u>", offload_units.h) and the journal says so: the step, its
// clipping scale, and how many of its state pieces (in processing order) are updated and on disk.
// The states' writer (state_placement.h: StatesInPlace) advances it after each piece is synced;
// --resume reads it and finishes the step from the gradients before anything else runs.
//
// Two record tensors ("train.journal.0", ".1", scratch, 4096 bytes each: one extent of their own,
// so a write never read-modify-writes the other) are written by turns, each record carrying a
// sequence number and a CRC-32C: a write torn by a crash leaves the other, older record intact, and
// the newest intact one wins.
#pragma once

#include <cstdint>
#include <optional>

#include "common/io/aligned_buffer.h"

namespace sparsetrain::fuyou {

class TensorStore;

// What the journal records of a step whose gradients are in the store.
struct SealedStep {
  std::int64_t step = 0;         // the step being applied (the last commit is step - 1)
  std::int64_t pieces_done = 0;  // its state pieces updated and on disk, in processing order
  double scale = 1.0;            // the clipping factor, applied when `scaled`
  bool scaled = false;
  double loss = 0;  // the step's mean loss and gradient norm, for the resumed run's record
  double grad_norm = 0;
  // The step's learning rate: a resumed run finishes the step at it, whatever its own schedule
  // (--steps, --lr, --warmup may differ) would give.
  double lr = 0;
};

class StepJournal {
 public:
  // Declares the record tensors in a new store (staged until its commit).
  static void define(TensorStore& store);
  // `store` must outlive the journal.
  explicit StepJournal(TensorStore& store);

  // The newest intact record; none in a store that has never sealed a step.
  std::optional<SealedStep> read();
  // Writes `record` over the older copy and syncs the store: durable when this returns.
  void write(const SealedStep& record);

 private:
  TensorStore& store_;
  common::io::AlignedBuffer buffer_;  // one record, 4096 bytes
  std::uint64_t sequence_ = 0;        // of the last record read or written
};

}  // namespace sparsetrain::fuyou
