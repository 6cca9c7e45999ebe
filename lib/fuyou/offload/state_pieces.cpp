// Optimizer state pieces (see state_pieces.h).
#include "fuyou/offload/state_pieces.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "common/error.h"

namespace sparsetrain::fuyou {

std::int64_t state_piece_floats(std::uint64_t extent_bytes, std::int64_t target) {
  if (extent_bytes == 0 || extent_bytes % 4096 != 0) {
    throw common::UsageError(
        "store extent of " + std::to_string(extent_bytes) + " bytes is not a multiple of 4096",
        "use an extent of 4 MiB (the default)");
  }
  // 12·P ≡ 0 (mod extent)  <=>  P ≡ 0 (mod extent / gcd(extent, 12)); and P ≡ 0 (mod 1024).
  const auto extent = static_cast<std::int64_t>(extent_bytes);
  const std::int64_t step =
      std::lcm(extent / std::gcd(extent, std::int64_t{12}), std::int64_t{1024});
  return std::max(step, target / step * step);
}

std::vector<StatePiece> unit_pieces(std::int64_t padded, std::int64_t piece_floats) {
  std::vector<StatePiece> pieces;
  for (std::int64_t first = 0, p = 0; first < padded; first += piece_floats, ++p) {
    pieces.push_back({p, first, std::min(piece_floats, padded - first)});
  }
  return pieces;
}

std::vector<TensorSpan> piece_spans(const std::vector<std::int64_t>& numels,
                                    const StatePiece& piece) {
  std::vector<TensorSpan> spans;
  const std::int64_t lo = piece.first, hi = piece.first + piece.floats;
  std::int64_t start = 0;  // tensor j's first flat float in the unit
  for (std::size_t j = 0; j < numels.size(); start += numels[j], ++j) {
    const std::int64_t a = std::max(lo, start), b = std::min(hi, start + numels[j]);
    if (a < b) spans.push_back({j, a - start, a - lo, b - a});
  }
  return spans;
}

}  // namespace sparsetrain::fuyou
