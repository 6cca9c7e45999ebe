// Where the optimizer states live between steps: the fp32 master weights and Adam m, v of every
// unit, laid out in state pieces (state_pieces.h). Chosen once from the plan (states_in_cpu):
//  - StatesInRam: every unit's pieces in RAM in the store's layout, written through to the store
//    on commit steps only (--commit-every); AdamW updates them in place.
//  - StatesInStore: in the store alone; two staging slots of one piece each alternate by piece,
//    the next piece prefetched while this one updates, each written back after its update.
//  - StatesInPlace (plan store_slots == 1): so too, but the store keeps one copy of each piece plus
//    one spare piece per unit (a ring), and the step journal (step_journal.h) makes each update
//    durable piece by piece: piece i of a unit of n pieces lives in ring slot (i - c) mod (n + 1)
//    after c updates, so piece i's new copy goes to the slot of piece i - 1's old one (the spare,
//    for i = 0), which the journal says is free. A crash mid-update leaves every piece intact in
//    its old or its new slot, and the journal says which.
// The optimizer thread runs a step through start_step / acquire / release / finish_step; the
// constructor fills a new store through init_buffer / init_flush; a resumed run loads through load;
// the block streams read a block's master through master / gather_master (their loader threads).
// A placement owns its buffers, which the store's I/O points into: it must outlive the store's
// I/O in flight. It counts its store traffic in OffloadStats::ssd_*_bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/timer.h"
#include "fuyou/offload/offload_units.h"
#include "fuyou/offload/step_journal.h"

namespace sparsetrain::fuyou {

class TensorStore;
struct OffloadStats;

class StatePlacement {
 public:
  virtual ~StatePlacement() = default;

  // New store: declares its tensors ("states.<unit>", and the journal's), staged until the caller
  // commits.
  virtual void define_tensors() = 0;

  // Optimizer thread, one step over `pieces` (every unit's, in processing order; kept by the
  // caller until finish_step) from piece `first` on (a resumed step: those before are done).
  // Piece s uses staging slot s % 2.
  virtual void start_step(const std::vector<UnitPiece>& pieces, std::size_t first = 0) = 0;
  // Piece s's [master | m | v] (piece.floats each), ready for AdamW: waits for its read and
  // starts piece s + 1's.
  virtual float* acquire(std::size_t s, common::PhaseTimes& phases) = 0;
  // Done updating piece s; `write`: send it to the store now.
  virtual void release(std::size_t s, bool write) = 0;
  // Waits for every write of the step.
  virtual void finish_step(common::PhaseTimes& phases) = 0;
  // true when the states live only in the store: every step writes and commits them.
  virtual bool in_store() const = 0;
  // true when they are updated in place (StatesInPlace): the step's gradients must be in the store
  // and sealed before its first update.
  virtual bool in_place() const { return false; }
  // In place: syncs the store (the gradients the caller wrote reach the disk) and journals `step`
  // (pieces_done 0). Optimizer thread (a SealJob), before the step's first update.
  virtual void seal(const SealedStep& step) { (void)step; }
  // In place, resume (before load): `committed` is the store's last committed step. The journal's
  // step after it when that step's gradients were sealed (then resume it from its pieces_done
  // with start_step), else none.
  virtual std::optional<SealedStep> resume(std::int64_t committed) {
    (void)committed;
    return std::nullopt;
  }
  // Where piece `piece` of unit `unit` is in the unit's store tensor between steps (bytes).
  virtual std::uint64_t piece_offset(std::int64_t unit, const StatePiece& piece) const = 0;

  // New store: the buffer in which unit `unit`'s piece is assembled (master segment written by
  // the caller; m, v and the padding zero), then written (blocking) by init_flush.
  virtual float* init_buffer(std::int64_t unit, const StatePiece& piece) = 0;
  virtual void init_flush(std::int64_t unit, const StatePiece& piece) = 0;
  // Resume: reads the piece from the store (checksums verified) and returns its [master | m | v].
  virtual const float* load(std::int64_t unit, const StatePiece& piece) = 0;
  // After init or load: frees what they needed (a piece of scratch) before training starts.
  virtual void finish_setup() {}
  // A block's streamed load: the piece's master segment (piece.floats), in place in RAM or read
  // from the store into `scratch` (at least piece.floats floats). Blocking; any thread.
  virtual const float* master(std::int64_t unit, const StatePiece& piece, float* scratch) = 0;
  // The unit's master floats [first, first + floats) of its flat order into dst (a block piece,
  // model_config.h). Blocking.
  virtual void gather_master_range(std::int64_t unit, std::int64_t first, std::int64_t floats,
                                   float* dst) = 0;
  // The unit's whole master (padded floats, the unit's flat order) into dst. Blocking.
  void gather_master(std::int64_t unit, float* dst) {
    gather_master_range(unit, 0, padded_floats(unit), dst);
  }
  virtual std::int64_t padded_floats(std::int64_t unit) const = 0;
};

// The plan's placement: in RAM when `in_ram`, else in the store through two slots of
// `largest_piece_floats` floats per segment, in place when `in_place` (then never in RAM; each
// piece journaled calls `on_durable(step, pieces_done)`, when set: a test's fault point).
// `units`, `store` and `stats` must outlive it.
using PieceDurableFn = std::function<void(std::int64_t step, std::int64_t pieces_done)>;
std::unique_ptr<StatePlacement> make_state_placement(bool in_ram, bool in_place,
                                                     const std::vector<UnitTensors>& units,
                                                     std::int64_t piece_floats,
                                                     std::int64_t largest_piece_floats,
                                                     TensorStore& store, OffloadStats& stats,
                                                     PieceDurableFn on_durable = {});

}  // namespace sparsetrain::fuyou
