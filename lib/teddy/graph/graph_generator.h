// Synthetic graphs for `sparsetrain graph generate`, tests and benchmarks. Both generators are
// seeded and deterministic: the same parameters and seed give the same graph on every machine
// and thread count (own splitmix64 stream, no std::*_distribution, whose output is unspecified).
//
//   csbm       contextual stochastic block model — the embedded default dataset. `classes`
//              balanced blocks; each of `edges` distinct undirected pairs joins two nodes of the
//              same class with probability `homophily`, else of two different classes; features
//              either Gaussian, x_v = μ_{y_v} + N(0, I/d) with class means μ_c ~ N(0, signal²·I/d)
//              (dense), or binary bag-of-words like Planetoid's (`words` distinct words per node,
//              each from its class's topic — a seeded set of d / (2·classes) words — with
//              probability signal / (1 + signal), else uniform over all d; ~1.3 % non-zero at
//              Cora's size, so GNNs train at Cora's speed); labels; and a Planetoid-style "public"
//              split (20 train nodes per class, 500 valid, 1000 test, or 5/18/37 % of the nodes
//              when the graph is too small). Cora-sized by default. With `degree_exponent` γ > 2
//              the model is degree-corrected (Karrer & Newman 2011): node v carries a weight
//              θ_v ~ Pareto with tail exponent γ (P(θ > t) ~ t^-(γ-1), capped so no expected
//              degree exceeds sqrt(2·edges)), and both ends of an edge are drawn ∝ θ (within the
//              chosen class for the second), so degrees follow a power law like real graphs'
//              (ogbn-products: mean 51, max 17k) instead of being Poisson.
//   powerlaw   R-MAT (Graph500 quadrant probabilities a=0.57, b=c=0.19, d=0.05) over 2^scale
//              nodes, node ids scrambled by a seeded permutation, self loops dropped and
//              duplicates removed until exactly `edges` distinct pairs remain. Structure only.
//              Memory ~ 20 bytes per edge while generating; scales to 1e8 edges. Beyond memory,
//              stream_power_law writes the sampled pairs straight to an OGB directory without
//              removing repeats (O(nodes) memory; at average degree 16 a few % of the pairs are
//              repeats, each kept as its own edge line).
#pragma once

#include <cstdint>
#include <string>

#include "teddy/graph/graph.h"

namespace sparsetrain::teddy {

enum class CsbmFeatures { kGaussian, kWords };

struct CsbmOptions {
  std::uint32_t nodes = 2708;  // Cora
  std::uint64_t edges = 5278;  // undirected, Cora
  std::uint32_t classes = 7;
  std::uint32_t feature_dim = 1433;
  double homophily = 0.81;  // Cora's edge homophily
  double signal = 1.0;      // Gaussian: norm of the class means relative to the noise; words: odds
                            // of a word coming from the class topic
  CsbmFeatures features = CsbmFeatures::kGaussian;
  std::uint32_t words = 18;  // kWords: distinct words (1-entries) per node (Cora: 18.2 on average)
  double degree_exponent = 0;  // 0: uniform endpoints (Poisson degrees); > 2: power-law degrees
  std::uint64_t seed = 0;
};

struct PowerLawOptions {
  std::uint64_t edges = 1000000;  // undirected, exact
  std::uint32_t nodes = 0;        // 0: edges / 8 (average degree 16), rounded up to a power of 2
  std::uint64_t seed = 0;
};

// Throws UsageError when the parameters cannot be met (e.g. more edges than node pairs).
Graph generate_csbm(const CsbmOptions& options);
Graph generate_power_law(const PowerLawOptions& options);
// R-MAT as above, `options.edges` pairs (self loops redrawn, repeats kept) written to the OGB
// directory `dir` (raw/edge.csv.gz, num-node-list, num-edge-list) as they are drawn, through a
// temporary sibling renamed at the end. Memory: the node permutation (4 bytes per node) and one
// chunk of text per thread. Returns the bytes written. UsageError as generate_power_law, or when
// `dir` exists and `overwrite` is false.
std::uint64_t stream_power_law(const PowerLawOptions& options, const std::string& dir,
                               int gzip_level, bool overwrite);

// Deterministic random stream (splitmix64) shared by the generators and tests.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) (Lemire's multiply-shift; bias < n / 2^64).
  std::uint64_t below(std::uint64_t n) {
    __extension__ using U128 = unsigned __int128;
    return static_cast<std::uint64_t>((static_cast<U128>(next()) * n) >> 64);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }
  double normal();  // Box-Muller

 private:
  std::uint64_t state_;
};

}  // namespace sparsetrain::teddy
