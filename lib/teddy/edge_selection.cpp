// k-lowest undirected pair selection by radix select; see edge_selection.h.
#include "teddy/edge_selection.h"

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

EdgeLevels select_pruned_edges(const std::vector<float>& scores,
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
  ST_ASSERT(scores.size() < UINT32_MAX, "edge ids are 32-bit");
  const auto m = static_cast<std::int64_t>(scores.size());
  EdgeLevels out;
  out.sparsities = sparsities;
  out.level.assign(scores.size(), 0);

  // 1. a per-thread 16-bit histogram of the keys' top bits. Keys are recomputed from the scores in
  // every pass instead of being stored: 8 bytes per edge less at peak.
  const auto key_of = [&scores](std::size_t e) {
    return edge_selection_key(scores[e], static_cast<std::uint32_t>(e));
  };
  const int threads = thread_count();
  std::vector<std::uint64_t> hist(kBuckets * static_cast<std::size_t>(threads), 0);
  std::uint64_t prunable = 0;
  std::uint64_t nan_scores = 0;
#pragma omp parallel num_threads(threads) reduction(+ : prunable, nan_scores)
  {
#ifdef _OPENMP
    std::uint64_t* h = hist.data() + kBuckets * static_cast<std::size_t>(omp_get_thread_num());
#else
    std::uint64_t* h = hist.data();
#endif
#pragma omp for schedule(static)
    for (std::int64_t e = 0; e < m; ++e) {
      const float s = scores[static_cast<std::size_t>(e)];
      nan_scores += std::isnan(s) ? 1 : 0;
      const std::uint64_t key = edge_selection_key(s, static_cast<std::uint32_t>(e));
      ++h[key >> (64 - kBucketBits)];
      prunable += std::isfinite(s) ? 1 : 0;
    }
  }
  ST_ASSERT(nan_scores == 0, "an edge scorer produced NaN");
  std::vector<std::uint64_t> start(kBuckets + 1, 0);  // start[b]: rank of the first key in bucket b
  for (std::size_t b = 0; b < kBuckets; ++b) {
    std::uint64_t c = 0;
    for (int t = 0; t < threads; ++t) c += hist[static_cast<std::size_t>(t) * kBuckets + b];
    start[b + 1] = start[b] + c;
  }

  // 2. thresholds: T_i = key of rank k_i (pruned iff key < T_i); k_i = m prunes everything.
  const std::size_t levels = sparsities.size();
  out.counts.resize(levels);
  std::vector<std::uint64_t> threshold(levels, UINT64_MAX);
  std::vector<std::int32_t> slot_of_bucket(kBuckets, -1);
  std::vector<std::size_t> needed_buckets;
  for (std::size_t i = 0; i < levels; ++i) {
    out.counts[i] = pruned_edge_count(sparsities[i], scores.size(), prunable);
    if (out.counts[i] >= scores.size()) continue;  // cannot happen while a finite key exists
    const auto b = static_cast<std::size_t>(
        std::upper_bound(start.begin(), start.end(), out.counts[i]) - start.begin() - 1);
    if (slot_of_bucket[b] < 0) {
      slot_of_bucket[b] = static_cast<std::int32_t>(needed_buckets.size());
      needed_buckets.push_back(b);
    }
  }
  std::vector<std::vector<std::uint64_t>> gathered(needed_buckets.size());
  for (std::size_t j = 0; j < needed_buckets.size(); ++j) {
    gathered[j].reserve(start[needed_buckets[j] + 1] - start[needed_buckets[j]]);
  }
  for (std::size_t e = 0; e < scores.size(); ++e) {
    const std::uint64_t key = key_of(e);
    const std::int32_t slot = slot_of_bucket[key >> (64 - kBucketBits)];
    if (slot >= 0) gathered[static_cast<std::size_t>(slot)].push_back(key);
  }
  for (std::size_t i = 0; i < levels; ++i) {
    if (out.counts[i] >= scores.size()) continue;
    const auto b = static_cast<std::size_t>(
        std::upper_bound(start.begin(), start.end(), out.counts[i]) - start.begin() - 1);
    std::vector<std::uint64_t>& bucket = gathered[static_cast<std::size_t>(slot_of_bucket[b])];
    const auto nth = bucket.begin() + static_cast<std::ptrdiff_t>(out.counts[i] - start[b]);
    std::nth_element(bucket.begin(), nth, bucket.end());
    threshold[i] = *nth;
  }
  gathered.clear();

  // 3. level of each edge: the first level whose threshold exceeds its key.
#pragma omp parallel for schedule(static)
  for (std::int64_t e = 0; e < m; ++e) {
    const std::uint64_t key = key_of(static_cast<std::size_t>(e));
    const auto first = std::upper_bound(threshold.begin(), threshold.end(), key);
    // thresholds ascend with the level, so every level from `first` on prunes this edge
    if (first != threshold.end()) {
      const std::size_t i = static_cast<std::size_t>(first - threshold.begin());
      if (out.counts[i] > 0)
        out.level[static_cast<std::size_t>(e)] = static_cast<std::uint8_t>(i + 1);
    }
  }
  return out;
}

}  // namespace sparsetrain::teddy
