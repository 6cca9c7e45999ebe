// StatesInRam and StatesInStore (see state_placement.h).
#include "fuyou/offload/state_placement.h"

#include <algorithm>
#include <cstring>
#include <future>

#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/store/tensor_store.h"

namespace sparsetrain::fuyou {

namespace {

using common::io::AlignedBuffer;

// What both placements share: the store, the layout, the traffic count.
class StatesBase : public StatePlacement {
 public:
  StatesBase(const std::vector<UnitTensors>& units, std::int64_t piece_floats, TensorStore& store,
             OffloadStats& stats)
      : units_(units), piece_floats_(piece_floats), store_(store), stats_(stats) {}

  void define_tensors() override {
    for (std::size_t u = 0; u < units_.size(); ++u) {
      store_.define(unit_store_name(static_cast<std::int64_t>(u)), StoreDType::kF32,
                    {kStateSegments * units_[u].padded});
    }
  }
  void start_step(const std::vector<UnitPiece>& pieces, std::size_t first) override {
    pieces_ = &pieces;
    first_ = first;
  }
  std::int64_t padded_floats(std::int64_t unit) const override {
    return units_[static_cast<std::size_t>(unit)].padded;
  }
  std::uint64_t piece_offset(std::int64_t, const StatePiece& piece) const override {
    return piece.byte_offset(piece_floats_);
  }

 protected:
  std::shared_future<void> write_piece(std::int64_t unit, const StatePiece& piece,
                                       const float* base) {
    return write_piece_at(unit, piece, base, piece_offset(unit, piece));
  }
  std::shared_future<void> write_piece_at(std::int64_t unit, const StatePiece& piece,
                                          const float* base, std::uint64_t offset) {
    stats_.ssd_write_bytes += piece.bytes();
    return store_.write(unit_store_name(unit), base, offset, piece.bytes());
  }
  std::shared_future<void> read_piece(std::int64_t unit, const StatePiece& piece, float* base,
                                      bool verify = false) {
    return store_.read(unit_store_name(unit), base, piece_offset(unit, piece), piece.bytes(),
                       verify);
  }
  std::shared_future<void> read_master(std::int64_t unit, const StatePiece& piece, float* dst) {
    return store_.read(unit_store_name(unit), dst, piece_offset(unit, piece), piece.master_bytes());
  }
  // fn(piece, from, n) for every piece of the unit that holds master floats [from, from + n) of
  // the unit's [first, first + floats).
  template <typename Fn>
  void for_each_overlap(std::int64_t unit, std::int64_t first, std::int64_t floats, Fn fn) const {
    for (const StatePiece& piece : units_[static_cast<std::size_t>(unit)].pieces) {
      const std::int64_t from = std::max(first, piece.first);
      const std::int64_t to = std::min(first + floats, piece.first + piece.floats);
      if (from < to) fn(piece, from, to - from);
    }
  }
  static void wait(std::shared_future<void>& f, common::PhaseTimes& phases, const char* phase) {
    if (!f.valid()) return;
    auto t = phases.scope(phase);
    f.get();
    f = {};
  }

  const std::vector<UnitTensors>& units_;
  const std::int64_t piece_floats_;
  TensorStore& store_;
  OffloadStats& stats_;
  const std::vector<UnitPiece>* pieces_ = nullptr;
  std::size_t first_ = 0;  // the step's first piece to update
};

class StatesInRam final : public StatesBase {
 public:
  StatesInRam(const std::vector<UnitTensors>& units, std::int64_t piece_floats, TensorStore& store,
              OffloadStats& stats)
      : StatesBase(units, piece_floats, store, stats) {
    // Zero-filled: m = v = 0 and the padding 0 before init writes the masters.
    for (const UnitTensors& unit : units) {
      states_.emplace_back(state_bytes(unit.padded), /*pin=*/false);
    }
  }

  float* acquire(std::size_t s, common::PhaseTimes&) override {
    const UnitPiece& p = (*pieces_)[s];
    return at(p.unit, p.piece);
  }
  void release(std::size_t s, bool write) override {
    if (!write) return;
    const UnitPiece& p = (*pieces_)[s];
    writes_.push_back(write_piece(p.unit, p.piece, at(p.unit, p.piece)));
  }
  void finish_step(common::PhaseTimes& phases) override {
    for (auto& f : writes_) wait(f, phases, "write_wait");
    writes_.clear();
  }
  bool in_store() const override { return false; }

  float* init_buffer(std::int64_t unit, const StatePiece& piece) override {
    return at(unit, piece);
  }
  void init_flush(std::int64_t unit, const StatePiece& piece) override {
    store_.write(unit_store_name(unit), at(unit, piece), piece_offset(unit, piece), piece.bytes())
        .get();
  }
  const float* load(std::int64_t unit, const StatePiece& piece) override {
    read_piece(unit, piece, at(unit, piece), /*verify=*/true).get();
    return at(unit, piece);
  }
  const float* master(std::int64_t unit, const StatePiece& piece, float*) override {
    return at(unit, piece);
  }
  void gather_master_range(std::int64_t unit, std::int64_t first, std::int64_t floats,
                           float* dst) override {
    for_each_overlap(unit, first, floats,
                     [&](const StatePiece& piece, std::int64_t from, std::int64_t n) {
                       std::memcpy(dst + (from - first), at(unit, piece) + (from - piece.first),
                                   segment_bytes(n));
                     });
  }

 private:
  float* at(std::int64_t unit, const StatePiece& piece) {
    return reinterpret_cast<float*>(states_[static_cast<std::size_t>(unit)].data()) +
           piece.states_offset();
  }

  std::vector<AlignedBuffer> states_;  // per unit: its pieces' [master | m | v], the store's layout
  std::vector<std::shared_future<void>> writes_;  // this step's
};

class StatesInStore : public StatesBase {
 public:
  StatesInStore(const std::vector<UnitTensors>& units, std::int64_t piece_floats,
                std::int64_t largest_piece_floats, TensorStore& store, OffloadStats& stats)
      : StatesBase(units, piece_floats, store, stats) {
    for (auto& slot : staging_) slot = AlignedBuffer(state_bytes(largest_piece_floats));
  }

  void start_step(const std::vector<UnitPiece>& pieces, std::size_t first) override {
    StatesBase::start_step(pieces, first);
    if (first < pieces.size()) issue_read(first);
  }
  float* acquire(std::size_t s, common::PhaseTimes& phases) override {
    if (s + 1 < pieces_->size()) {
      wait(writes_[(s + 1) % 2], phases, "write_wait");  // the slot's previous piece is on disk
      issue_read(s + 1);                                 // prefetch the next piece's states
    }
    wait(reads_[s % 2], phases, "read_wait");
    return slot(s);
  }
  void release(std::size_t s, bool write) override {
    if (!write) return;
    const UnitPiece& p = (*pieces_)[s];
    writes_[s % 2] = write_piece(p.unit, p.piece, slot(s));
  }
  void finish_step(common::PhaseTimes& phases) override {
    for (auto& f : writes_) wait(f, phases, "write_wait");
  }
  bool in_store() const override { return true; }

  // init and load go through one piece of scratch (zero, as a new buffer is; zeroed again after
  // each piece), made on first use and freed by finish_setup.
  float* init_buffer(std::int64_t, const StatePiece&) override { return scratch(); }
  void init_flush(std::int64_t unit, const StatePiece& piece) override {
    float* base = scratch();
    store_.write(unit_store_name(unit), base, piece_offset(unit, piece), piece.bytes()).get();
    std::memset(base, 0, scratch_.size());  // m = v = 0, padding 0
  }
  const float* load(std::int64_t unit, const StatePiece& piece) override {
    float* base = scratch();
    read_piece(unit, piece, base, /*verify=*/true).get();
    return base;
  }
  void finish_setup() override { scratch_ = AlignedBuffer(); }
  const float* master(std::int64_t unit, const StatePiece& piece, float* scratch) override {
    read_master(unit, piece, scratch).get();
    return scratch;
  }
  void gather_master_range(std::int64_t unit, std::int64_t first, std::int64_t floats,
                           float* dst) override {
    std::vector<std::shared_future<void>> reads;
    for_each_overlap(
        unit, first, floats, [&](const StatePiece& piece, std::int64_t from, std::int64_t n) {
          reads.push_back(store_.read(unit_store_name(unit), dst + (from - first),
                                      piece_offset(unit, piece) + segment_bytes(from - piece.first),
                                      segment_bytes(n)));
        });
    for (auto& read : reads) read.get();
  }

 protected:
  float* slot(std::size_t s) { return reinterpret_cast<float*>(staging_[s % 2].data()); }
  void issue_read(std::size_t s) {
    const UnitPiece& p = (*pieces_)[s];
    reads_[s % 2] = read_piece(p.unit, p.piece, slot(s));
    stats_.ssd_read_bytes += p.piece.bytes();
  }
  float* scratch() {
    if (scratch_.size() == 0) scratch_ = AlignedBuffer(staging_[0].size(), /*pin=*/false);
    return reinterpret_cast<float*>(scratch_.data());
  }

  AlignedBuffer staging_[2];  // one piece's [master | m | v] each, alternating by piece
  AlignedBuffer scratch_;     // the constructor's (init, resume)
  std::shared_future<void> reads_[2], writes_[2];
};

class StatesInPlace final : public StatesInStore {
 public:
  StatesInPlace(const std::vector<UnitTensors>& units, std::int64_t piece_floats,
                std::int64_t largest_piece_floats, TensorStore& store, OffloadStats& stats,
                PieceDurableFn on_durable)
      : StatesInStore(units, piece_floats, largest_piece_floats, store, stats),
        journal_(store),
        on_durable_(std::move(on_durable)) {}

  // Each unit's ring: n + 1 slots of its first (largest) piece, whole extents each, so that no
  // write of one slot read-modify-writes another's extent.
  void define_tensors() override {
    for (std::size_t u = 0; u < units_.size(); ++u) {
      const auto unit = static_cast<std::int64_t>(u);
      store_.define(unit_store_name(unit), StoreDType::kF32,
                    {static_cast<std::int64_t>((units_[u].pieces.size() + 1) * slot_bytes(unit) /
                                               sizeof(float))},
                    TensorKind::kInPlace);
    }
    StepJournal::define(store_);
  }
  bool in_place() const override { return true; }
  void seal(const SealedStep& step) override {
    store_.sync();
    sealed_ = step;
    sealed_.pieces_done = 0;
    journal_.write(sealed_);
  }
  std::optional<SealedStep> resume(std::int64_t committed) override {
    updates_ = committed;
    std::optional<SealedStep> step = journal_.read();
    if (!step || step->step <= committed) return std::nullopt;
    const auto total = static_cast<std::int64_t>(order_size());
    if (step->step != committed + 1 || step->pieces_done < 0 || step->pieces_done > total) {
      throw common::RunError(
          "the store's step journal is at step " + std::to_string(step->step) + " (" +
              std::to_string(step->pieces_done) + " pieces done) but its last commit is step " +
              std::to_string(committed),
          "the store is inconsistent: start a new run in an empty --ssd directory");
    }
    // The pieces the stopped run updated are in their new slots, written after the last commit:
    // their checksums are adopted from the disk (the journal vouches for them: synced before it
    // counted them).
    sealed_ = *step;
    return step;
  }
  // Resume: after resume() said so, the done pieces' checksums (the caller's step list).
  void adopt_done(const std::vector<UnitPiece>& pieces) {
    for (std::int64_t s = 0; s < sealed_.pieces_done; ++s) {
      const UnitPiece& p = pieces[static_cast<std::size_t>(s)];
      store_.adopt_checksums(unit_store_name(p.unit), ring_offset(p.unit, p.piece, updates_ + 1),
                             p.piece.bytes());
    }
  }
  void start_step(const std::vector<UnitPiece>& pieces, std::size_t first) override {
    if (first > 0) adopt_done(pieces);
    StatesInStore::start_step(pieces, first);
  }
  float* acquire(std::size_t s, common::PhaseTimes& phases) override {
    phases_ = &phases;
    return StatesInStore::acquire(s, phases);
  }
  // Piece s - 1's new copy is made durable and journaled first: only then is its old slot, which
  // piece s's new copy takes, free.
  void release(std::size_t s, bool write) override {
    ST_ASSERT(write, "states in place are written every step");
    if (s > first_) make_durable(s);
    const UnitPiece& p = (*pieces_)[s];
    writes_[s % 2] =
        write_piece_at(p.unit, p.piece, slot(s), ring_offset(p.unit, p.piece, updates_ + 1));
  }
  void finish_step(common::PhaseTimes& phases) override {
    phases_ = &phases;
    if (first_ < pieces_->size()) make_durable(pieces_->size());
    ++updates_;
    first_ = 0;
  }
  std::uint64_t piece_offset(std::int64_t unit, const StatePiece& piece) const override {
    return ring_offset(unit, piece, updates_);
  }

 private:
  std::uint64_t slot_bytes(std::int64_t unit) const {
    const UnitTensors& u = units_[static_cast<std::size_t>(unit)];
    const std::uint64_t extent = store_.extent_bytes();
    return (u.pieces.front().bytes() + extent - 1) / extent * extent;
  }
  // Piece `piece` of `unit` after `updates` updates: ring slot (i - c) mod (n + 1).
  std::uint64_t ring_offset(std::int64_t unit, const StatePiece& piece,
                            std::int64_t updates) const {
    const auto ring =
        static_cast<std::int64_t>(units_[static_cast<std::size_t>(unit)].pieces.size()) + 1;
    const std::int64_t slot = ((piece.index - updates) % ring + ring) % ring;
    return static_cast<std::uint64_t>(slot) * slot_bytes(unit);
  }
  std::size_t order_size() const {
    std::size_t n = 0;
    for (const UnitTensors& unit : units_) n += unit.pieces.size();
    return n;
  }
  // Pieces [0, done) of the step are updated: waits for piece done - 1's write, syncs, journals.
  void make_durable(std::size_t done) {
    common::PhaseTimes scratch;
    common::PhaseTimes& phases = phases_ ? *phases_ : scratch;
    wait(writes_[(done - 1) % 2], phases, "write_wait");
    auto t = phases.scope("journal");
    store_.sync();
    sealed_.pieces_done = static_cast<std::int64_t>(done);
    journal_.write(sealed_);
    if (on_durable_) on_durable_(sealed_.step, sealed_.pieces_done);
  }

  StepJournal journal_;
  SealedStep sealed_;         // the step being applied
  std::int64_t updates_ = 0;  // completed steps: every unit's pieces have moved this often
  common::PhaseTimes* phases_ = nullptr;  // the optimizer thread's
  PieceDurableFn on_durable_;
};

}  // namespace

std::unique_ptr<StatePlacement> make_state_placement(bool in_ram, bool in_place,
                                                     const std::vector<UnitTensors>& units,
                                                     std::int64_t piece_floats,
                                                     std::int64_t largest_piece_floats,
                                                     TensorStore& store, OffloadStats& stats,
                                                     PieceDurableFn on_durable) {
  if (in_place) {
    return std::make_unique<StatesInPlace>(units, piece_floats, largest_piece_floats, store, stats,
                                           std::move(on_durable));
  }
  if (in_ram) return std::make_unique<StatesInRam>(units, piece_floats, store, stats);
  return std::make_unique<StatesInStore>(units, piece_floats, largest_piece_floats, store, stats);
}

}  // namespace sparsetrain::fuyou
