// TokenData::batch: the deterministic (batch, seq) windows, as int64 tensors. Apart from
// token_data.cpp so that the file readers stay torch-free.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstdint>

#include "common/error.h"
#include "fuyou/model/token_data.h"  // the class whose batch() this is

namespace sparsetrain::fuyou {

namespace {

// splitmix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix, good enough to turn
// counters into independent-looking draws.
std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

__extension__ typedef unsigned __int128 Uint128;  // GCC/Clang builtin; __extension__: -Wpedantic

// Uniform in [0, range) from 64 random bits (Lemire's multiply-shift; bias < range / 2^64).
std::uint64_t draw_below(std::uint64_t bits, std::uint64_t range) {
  return static_cast<std::uint64_t>((static_cast<Uint128>(bits) * range) >> 64);
}

}  // namespace

std::pair<at::Tensor, at::Tensor> TokenData::batch(std::uint64_t seed, std::int64_t index,
                                                   std::int64_t batch, std::int64_t seq) const {
  if (batch < 1 || seq < 1 || index < 0) {
    throw common::UsageError("batch " + std::to_string(batch) + " x seq " + std::to_string(seq) +
                                 " at index " + std::to_string(index) +
                                 " is not a valid window request",
                             "batch and seq must be at least 1, index at least 0");
  }
  if (size_ < seq + 1) {
    throw common::UsageError(source_ + " has " + std::to_string(size_) +
                                 " tokens, fewer than seq + 1 = " + std::to_string(seq + 1),
                             "use a shorter --seq, more data, or a smaller validation fraction");
  }
  const auto starts = static_cast<std::uint64_t>(size_ - seq);  // window starts: [0, n - seq)
  at::Tensor inputs = at::empty({batch, seq}, at::kLong);
  at::Tensor targets = at::empty({batch, seq}, at::kLong);
  auto* in = inputs.data_ptr<std::int64_t>();   // [batch, seq]
  auto* tg = targets.data_ptr<std::int64_t>();  // [batch, seq]
  const std::uint64_t batch_key = mix64(mix64(seed) ^ static_cast<std::uint64_t>(index));
  for (std::int64_t r = 0; r < batch; ++r) {
    const auto start = static_cast<std::int64_t>(
        draw_below(mix64(batch_key + static_cast<std::uint64_t>(r)), starts));
    for (std::int64_t j = 0; j < seq; ++j) {
      in[r * seq + j] = token(start + j);
      tg[r * seq + j] = mask_at(start + j + 1) ? token(start + j + 1) : kIgnoredTarget;
    }
  }
  return {inputs, targets};
}

}  // namespace sparsetrain::fuyou
