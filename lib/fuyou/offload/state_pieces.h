// Optimizer state pieces: how a unit's fp32 master weights and Adam m, v are laid out in the store
// (and in RAM when they live there), so that the optimizer stages one bounded piece at a time
// instead of a whole unit. Without pieces the states' share of the --cpu-mem floor was two whole
// units' states (2 × 12 B per parameter of the largest unit: 7.0 GiB for GPT-3 13B's blocks); with
// pieces of P floats it is 2 × 12 × P bytes (384 MiB at the default P = 2^24). The CUDA tier's
// gradients come down and its weights go up piece by piece too, so its two pinned fp32 gradient
// and two bf16 weight slots hold one piece each (192 MiB at the default P), not one unit.
//
// Layout of unit u's store tensor (offload_plan.h numbers the units), padded = its parameters
// rounded up to 1024 floats:
//   piece 0 [master | m | v], piece 1 [master | m | v], …   each segment `floats` long,
// piece p covering the unit's flat floats [p·P, p·P + floats) with floats = min(P, padded − p·P),
// at byte offset 12·P·p. A unit of at most P floats is one piece: [master | m | v] as before.
// P is a multiple of 1024 (4096-byte segments, for O_DIRECT) and 12·P a multiple of the store's
// extent, so no two pieces share an extent (the store's read-modify-write of a partly written
// extent must not race a neighbour's write in flight). AdamW is elementwise, so updating a unit
// piece by piece gives the same bits as one pass. Pure arithmetic: no torch, no I/O.
#pragma once

#include <cstdint>
#include <vector>

namespace sparsetrain::fuyou {

// Default P: 2^24 floats, 64 MiB per segment, 192 MiB per piece.
inline constexpr std::int64_t kDefaultStatePieceFloats = std::int64_t{1} << 24;

// The piece size for a store with `extent_bytes` extents: the largest multiple of the alignment
// step (1024 floats, 12·P a multiple of the extent) not above `target` floats, at least one step.
// UsageError when extent_bytes is not a positive multiple of 4096.
std::int64_t state_piece_floats(std::uint64_t extent_bytes,
                                std::int64_t target = kDefaultStatePieceFloats);

// The states' byte arithmetic, owned here: the planner and the trainer size and address every state
// buffer through these, never through a literal 12, 4 or 3.
inline constexpr std::int64_t kStateSegments = 3;  // master, m, v
// Bytes of `floats` floats of one segment: a master piece alone, or a gradient piece.
constexpr std::uint64_t segment_bytes(std::int64_t floats) {
  return 4 * static_cast<std::uint64_t>(floats);
}
// Bytes of [master | m | v] with `floats` floats per segment: a piece, a staging slot, a unit.
constexpr std::uint64_t state_bytes(std::int64_t floats) {
  return kStateSegments * segment_bytes(floats);
}

struct StatePiece {
  std::int64_t index = 0;   // p
  std::int64_t first = 0;   // p·P: the unit's first flat float in this piece
  std::int64_t floats = 0;  // segment length (a multiple of 1024)
  // Where the piece's [master | m | v] starts in the unit's store tensor: 12·P·p.
  std::uint64_t byte_offset(std::int64_t piece_floats) const {
    return state_bytes(piece_floats) * static_cast<std::uint64_t>(index);
  }
  // Where the piece's gradient starts in a block's gradient store tensor (segments only): 4·P·p.
  std::uint64_t grad_byte_offset(std::int64_t piece_floats) const {
    return segment_bytes(piece_floats) * static_cast<std::uint64_t>(index);
  }
  // Floats from the start of the unit's states in RAM (the store's layout) to this piece's master.
  std::int64_t states_offset() const { return kStateSegments * first; }
  std::uint64_t bytes() const { return state_bytes(floats); }           // [master | m | v]
  std::uint64_t master_bytes() const { return segment_bytes(floats); }  // one segment
  // Within the piece: master at 0, m at `floats`, v at 2·floats.
  std::int64_t m_offset() const { return floats; }
  std::int64_t v_offset() const { return 2 * floats; }
};

// The pieces of a unit of `padded` floats (a multiple of 1024), in order.
std::vector<StatePiece> unit_pieces(std::int64_t padded, std::int64_t piece_floats);

// Where a piece meets the unit's tensors, which lie one after another in the unit's flat floats
// (numels[j] floats each, in the unit's tensor order): tensor j's floats [tensor_offset,
// tensor_offset + floats) are the piece's [piece_offset, piece_offset + floats). Tensors that do
// not meet the piece are left out; the padding after the last tensor is no span.
struct TensorSpan {
  std::size_t tensor = 0;
  std::int64_t tensor_offset = 0;
  std::int64_t piece_offset = 0;
  std::int64_t floats = 0;
};
std::vector<TensorSpan> piece_spans(const std::vector<std::int64_t>& numels,
                                    const StatePiece& piece);

}  // namespace sparsetrain::fuyou
