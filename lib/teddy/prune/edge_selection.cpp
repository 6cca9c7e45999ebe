// k-lowest undirected pair selection by radix select; see edge_selection.h.
#include "teddy/prune/edge_selection.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/error.h"

namespace sparsetrain::teddy {

namespace {

constexpr int kBucketBits = 16;
constexpr std::size_t kBuckets = std::size_t{1} << kBucketBits;
// Passes over the edges run in dynamic chunks of 64 Ki edges so that a thread that loses its core
// on a shared machine does not hold up the others (see edge_scorer.cpp); per-thread histograms
// and gathers are merged order-independently, so the schedule never changes a result.
constexpr int kEdgeChunk = 1 << 16;

inline std::uint32_t ordered_bits(float score) {
  std::uint32_t u = 0;
  std::memcpy(&u, &score, sizeof u);
  // Negative floats: flip all bits; non-negative: flip the sign bit. Unsigned order = float order.
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

int thread_count() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

std::uint64_t edge_selection_key(float score, std::uint32_t edge_id) {
  return (std::uint64_t{ordered_bits(score)} << 32) | edge_id;
}

std::vector<double> paper_graph_sparsities() {
  std::vector<double> s;
  for (int k = 1; k <= 20; ++k) s.push_back(1.0 - std::pow(0.95, k));
  return s;
}

std::uint64_t pruned_edge_count(double sparsity, std::uint64_t num_edges,
                                std::uint64_t num_prunable) {
  if (!(sparsity >= 0.0 && sparsity <= 1.0)) {
    throw common::UsageError("graph sparsity " + std::to_string(sparsity) + " is outside [0, 1]",
                             "pass a fraction of edges to prune, e.g. --graph-sparsity 0.3");
  }
  const auto k = static_cast<std::uint64_t>(std::floor(sparsity * static_cast<double>(num_edges)));
  return std::min(k, num_prunable);
}

std::vector<std::uint8_t> EdgeLevels::keep_mask(std::size_t i) const {
  ST_ASSERT(i < sparsities.size(), "level index out of range");
  const auto limit = static_cast<std::uint8_t>(i + 1);
  std::vector<std::uint8_t> keep(level.size());
  for (std::size_t e = 0; e < level.size(); ++e) keep[e] = level[e] == 0 || level[e] > limit;
  return keep;
}

EdgeLevels select_pruned_edges(const float* scores, std::size_t count,
                               const std::vector<double>& sparsities) {
  if (sparsities.empty() || sparsities.size() > 255) {
    throw common::UsageError("between 1 and 255 sparsity levels are needed, got " +
                             std::to_string(sparsities.size()));
  }
  for (std::size_t i = 1; i < sparsities.size(); ++i) {
    if (!(sparsities[i] > sparsities[i - 1])) {
      throw common::UsageError("sparsity levels must increase strictly",
                               "sort the list and drop repeats");
    }
  }
  ST_ASSERT(count < UINT32_MAX, "edge ids are 32-bit");
  const auto m = static_cast<std::int64_t>(count);
  EdgeLevels out;
  out.sparsities = sparsities;
  out.level.resize(count);  // every entry is written in pass 3

  // 1. a per-thread histogram of the keys' top 16 bits (= the top 16 bits of the ordered score
  // bits). Keys are recomputed from the scores in every pass instead of being stored: 8 bytes per
  // edge less at peak. 32-bit counts: 256 KiB per thread, L2-resident.
  const int threads = thread_count();
  std::vector<std::uint32_t> hist(kBuckets * static_cast<std::size_t>(threads), 0);
  std::uint64_t prunable = 0;
  std::uint64_t nan_scores = 0;
#pragma omp parallel num_threads(threads) reduction(+ : prunable, nan_scores)
  {
#ifdef _OPENMP
    std::uint32_t* h = hist.data() + kBuckets * static_cast<std::size_t>(omp_get_thread_num());
#else
    std::uint32_t* h = hist.data();
#endif
#pragma omp for schedule(dynamic, kEdgeChunk)
    for (std::int64_t e = 0; e < m; ++e) {
      const std::uint32_t bits = ordered_bits(scores[static_cast<std::size_t>(e)]);
      // in ordered bits, +inf is 0xff800000, NaN above it, -inf/-NaN at the bottom
      const std::uint32_t magnitude = (bits & 0x80000000u) ? bits : ~bits;
      nan_scores += (magnitude & 0x7fffffffu) > 0x7f800000u ? 1 : 0;
      prunable += (magnitude & 0x7fffffffu) < 0x7f800000u ? 1 : 0;
      ++h[bits >> (32 - kBucketBits)];
    }
  }
  ST_ASSERT(nan_scores == 0, "an edge scorer produced NaN");
  std::vector<std::uint64_t> start(kBuckets + 1, 0);  // start[b]: rank of the first key in bucket b
  for (std::size_t b = 0; b < kBuckets; ++b) {
    std::uint64_t c = 0;
    for (int t = 0; t < threads; ++t) c += hist[static_cast<std::size_t>(t) * kBuckets + b];
    start[b + 1] = start[b] + c;
  }
  hist = {};

  // 2. thresholds: T_i = key of rank k_i (pruned iff key < T_i); k_i = m prunes everything. The
  // buckets holding a rank k_i are gathered (per thread, in parallel) and nth_element'ed; keys are
  // unique, so the gather order does not matter.
  const std::size_t levels = sparsities.size();
  out.counts.resize(levels);
  std::vector<std::uint64_t> threshold(levels, UINT64_MAX);
  std::vector<std::int32_t> slot_of_bucket(kBuckets, -1);
  std::vector<std::size_t> needed_buckets;
  const auto bucket_of_rank = [&start](std::uint64_t rank) {
    return static_cast<std::size_t>(std::upper_bound(start.begin(), start.end(), rank) -
                                    start.begin() - 1);
  };
  for (std::size_t i = 0; i < levels; ++i) {
    out.counts[i] = pruned_edge_count(sparsities[i], count, prunable);
    if (out.counts[i] >= count) continue;  // cannot happen while a finite key exists
    const std::size_t b = bucket_of_rank(out.counts[i]);
    if (slot_of_bucket[b] < 0) {
      slot_of_bucket[b] = static_cast<std::int32_t>(needed_buckets.size());
      needed_buckets.push_back(b);
    }
  }
  const std::size_t slots = needed_buckets.size();
  // gathered[t * slots + j]: thread t's keys of needed bucket j
  std::vector<std::vector<std::uint64_t>> gathered(static_cast<std::size_t>(threads) * slots);
  if (slots > 0) {
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
      const auto t = static_cast<std::size_t>(omp_get_thread_num());
#else
      const std::size_t t = 0;
#endif
      std::vector<std::uint64_t>* mine = gathered.data() + t * slots;
#pragma omp for schedule(dynamic, kEdgeChunk)
      for (std::int64_t e = 0; e < m; ++e) {
        const std::uint32_t bits = ordered_bits(scores[static_cast<std::size_t>(e)]);
        const std::int32_t slot = slot_of_bucket[bits >> (32 - kBucketBits)];
        if (slot >= 0) {
          mine[slot].push_back(std::uint64_t{bits} << 32 | static_cast<std::uint32_t>(e));
        }
      }
    }
  }
  for (std::size_t j = 0; j < slots; ++j) {
    std::vector<std::uint64_t>& bucket = gathered[j];  // thread 0's part collects the rest
    for (int t = 1; t < threads; ++t) {
      std::vector<std::uint64_t>& part = gathered[static_cast<std::size_t>(t) * slots + j];
      bucket.insert(bucket.end(), part.begin(), part.end());
      part = {};
    }
  }
  for (std::size_t i = 0; i < levels; ++i) {
    if (out.counts[i] >= count) continue;
    const std::size_t b = bucket_of_rank(out.counts[i]);
    std::vector<std::uint64_t>& bucket = gathered[static_cast<std::size_t>(slot_of_bucket[b])];
    const auto nth = bucket.begin() + static_cast<std::ptrdiff_t>(out.counts[i] - start[b]);
    std::nth_element(bucket.begin(), nth, bucket.end());
    threshold[i] = *nth;
  }
  gathered.clear();

  // 3. level of each edge: the first level whose threshold exceeds its key (thresholds ascend
  // with the level, so every level from there on prunes the edge too). Per bucket this is one
  // level for all its keys unless a threshold falls inside the bucket (at most `levels` buckets):
  // a 64 Ki-entry table answers the rest without a search.
  constexpr std::int16_t kMixed = -1;
  std::vector<std::int16_t> level_of_bucket(kBuckets);
  const auto first_level_above = [&](std::uint64_t key) -> std::int16_t {
    const auto first = std::upper_bound(threshold.begin(), threshold.end(), key);
    if (first == threshold.end()) return 0;
    const auto i = static_cast<std::size_t>(first - threshold.begin());
    return static_cast<std::int16_t>(out.counts[i] > 0 ? i + 1 : 0);
  };
  for (std::size_t b = 0; b < kBuckets; ++b) {
    const std::uint64_t lowest = std::uint64_t{b} << (64 - kBucketBits);
    const std::uint64_t highest = lowest | ((std::uint64_t{1} << (64 - kBucketBits)) - 1);
    const std::int16_t low_level = first_level_above(lowest);
    level_of_bucket[b] = low_level == first_level_above(highest) ? low_level : kMixed;
  }
#pragma omp parallel for schedule(dynamic, kEdgeChunk)
  for (std::int64_t e = 0; e < m; ++e) {
    const std::uint32_t bits = ordered_bits(scores[static_cast<std::size_t>(e)]);
    std::int16_t lv = level_of_bucket[bits >> (32 - kBucketBits)];
    if (lv == kMixed)
      lv = first_level_above(std::uint64_t{bits} << 32 | static_cast<std::uint32_t>(e));
    out.level[static_cast<std::size_t>(e)] = static_cast<std::uint8_t>(lv);
  }
  return out;
}

}  // namespace sparsetrain::teddy
