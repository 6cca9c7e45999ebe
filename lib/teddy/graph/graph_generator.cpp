// Contextual SBM and R-MAT generators; see graph_generator.h.
#include "teddy/graph/graph_generator.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <string>
#include <unordered_set>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/atomic_file.h"
#include "common/error.h"
#include "teddy/graph/gzip_file.h"

namespace sparsetrain::teddy {

double SplitMix64::normal() {
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

namespace {

int omp_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  SplitMix64 r(a ^ (b * 0xd1b54a32d192ed03ULL));
  return r.next();
}

void add_public_split(Graph& g, std::uint32_t classes) {
  NodeSplit split;
  const std::uint32_t n = g.num_nodes;
  std::vector<std::uint8_t> used(n, 0);
  const bool planetoid = n >= std::uint64_t{20} * classes + 1500;
  const std::uint32_t per_class =
      planetoid ? 20 : std::max<std::uint32_t>(1, n / 20 / std::max(1u, classes));
  const std::uint32_t valid = planetoid ? 500 : n * 18 / 100;
  const std::uint32_t test = planetoid ? 1000 : n * 37 / 100;
  std::vector<std::uint32_t> taken(classes, 0);
  for (std::uint32_t v = 0; v < n; ++v) {
    const auto c = static_cast<std::uint32_t>(g.labels[v]);
    if (taken[c] < per_class) {
      ++taken[c];
      split.train.push_back(v);
      used[v] = 1;
    }
  }
  for (std::uint32_t v = n; v-- > 0 && split.test.size() < test;) {
    if (!used[v]) {
      split.test.push_back(v);
      used[v] = 1;
    }
  }
  std::reverse(split.test.begin(), split.test.end());
  for (std::uint32_t v = 0; v < n && split.valid.size() < valid; ++v) {
    if (!used[v]) {
      split.valid.push_back(v);
      used[v] = 1;
    }
  }
  g.splits["public"] = std::move(split);
}

// LSD radix sort of 64-bit keys over their low `bits` bits, 16 bits per pass.
void radix_sort(std::vector<std::uint64_t>& keys, int bits) {
  std::vector<std::uint64_t> tmp(keys.size());
  std::vector<std::uint64_t> count(65537);
  for (int shift = 0; shift < bits; shift += 16) {
    std::fill(count.begin(), count.end(), 0);
    for (std::uint64_t k : keys) ++count[((k >> shift) & 0xffff) + 1];
    for (std::size_t i = 1; i < count.size(); ++i) count[i] += count[i - 1];
    for (std::uint64_t k : keys) tmp[count[(k >> shift) & 0xffff]++] = k;
    keys.swap(tmp);
  }
}

// Binary bag-of-words rows: `words` distinct words per node, each from the node's class topic
// with probability signal / (1 + signal), else uniform over the vocabulary (see the header).
void add_word_features(Graph& g, const CsbmOptions& o, SplitMix64& rng) {
  const std::uint32_t d = o.feature_dim;
  const std::uint32_t words = std::min(o.words, d);
  const std::uint32_t topic_size = std::max<std::uint32_t>(words, d / (2 * o.classes));
  const double p_topic = o.signal / (1.0 + o.signal);
  std::vector<std::vector<std::uint32_t>> topics(o.classes);
  std::vector<std::uint32_t> vocab(d);
  std::iota(vocab.begin(), vocab.end(), 0u);
  for (auto& topic : topics) {  // partial Fisher-Yates: the first topic_size of a shuffle
    for (std::uint32_t i = 0; i < std::min(topic_size, d); ++i) {
      std::swap(vocab[i], vocab[i + rng.below(d - i)]);
    }
    topic.assign(vocab.begin(), vocab.begin() + std::min(topic_size, d));
  }
  g.feature_dim = d;
  g.features.assign(std::size_t{g.num_nodes} * d, 0.0f);
  for (std::uint32_t v = 0; v < g.num_nodes; ++v) {
    const auto& topic = topics[static_cast<std::size_t>(g.labels[v])];
    float* x = g.features.data() + std::size_t{v} * d;
    for (std::uint32_t placed = 0; placed < words;) {
      const std::uint32_t w = rng.uniform() < p_topic ? topic[rng.below(topic.size())]
                                                      : static_cast<std::uint32_t>(rng.below(d));
      if (x[w] == 0.0f) {
        x[w] = 1.0f;
        ++placed;
      }
    }
  }
}

}  // namespace

Graph generate_csbm(const CsbmOptions& o) {
  if (o.classes < 2 || o.nodes < 2 * o.classes) {
    throw common::UsageError("csbm needs at least 2 classes and 2 nodes per class",
                             "raise --nodes or lower --classes");
  }
  const double max_pairs = 0.5 * static_cast<double>(o.nodes) * (o.nodes - 1);
  if (static_cast<double>(o.edges) > 0.5 * max_pairs) {
    throw common::UsageError(
        "csbm: " + std::to_string(o.edges) + " edges is more than half of all node pairs",
        "lower --edges; the generator samples sparse graphs");
  }
  if (!(o.homophily >= 0 && o.homophily <= 1)) {
    throw common::UsageError("--homophily must lie in [0, 1]");
  }
  SplitMix64 rng(mix(o.seed, 0x63736d62));
  Graph g;
  g.num_nodes = o.nodes;
  // Balanced labels in a seeded random order.
  g.labels.resize(o.nodes);
  for (std::uint32_t v = 0; v < o.nodes; ++v) g.labels[v] = v % o.classes;
  for (std::uint32_t v = o.nodes - 1; v > 0; --v)
    std::swap(g.labels[v], g.labels[rng.below(v + 1)]);
  std::vector<std::vector<std::uint32_t>> members(o.classes);
  for (std::uint32_t v = 0; v < o.nodes; ++v)
    members[static_cast<std::size_t>(g.labels[v])].push_back(v);
  if (o.degree_exponent != 0 && !(o.degree_exponent > 2)) {
    throw common::UsageError("--degree-exponent must exceed 2 (or be 0 for Poisson degrees)",
                             "ogbn-products-like skew is about 2.5");
  }
  // Degree correction: cumulative θ over all nodes (the first end) and per class (the second).
  const bool skewed = o.degree_exponent > 2;
  std::vector<double> all_cum, weight;
  std::vector<std::vector<double>> class_cum(o.classes);
  if (skewed) {
    weight.resize(o.nodes);
    double total = 0;
    for (double& w : weight) {
      w = std::pow(1.0 - rng.uniform(), -1.0 / (o.degree_exponent - 1.0));  // Pareto, θ >= 1
      total += w;
    }
    // Expected degree 2·edges·θ/Σθ at most sqrt(2·edges): clip once (it barely moves Σθ).
    const double cap = total * std::sqrt(2.0 * static_cast<double>(o.edges)) /
                       (2.0 * static_cast<double>(o.edges));
    for (double& w : weight) w = std::min(w, cap);
    all_cum.resize(o.nodes);
    double run = 0;
    for (std::uint32_t v = 0; v < o.nodes; ++v) all_cum[v] = run += weight[v];
    for (std::uint32_t c = 0; c < o.classes; ++c) {
      double r = 0;
      for (const std::uint32_t v : members[c]) class_cum[c].push_back(r += weight[v]);
    }
  }
  // Index drawn ∝ the weights whose running sums are `cum`.
  const auto draw = [&](const std::vector<double>& cum) {
    const double x = rng.uniform() * cum.back();
    const auto at = std::upper_bound(cum.begin(), cum.end(), x) - cum.begin();
    return static_cast<std::size_t>(std::min<std::ptrdiff_t>(at, std::ptrdiff_t(cum.size()) - 1));
  };

  std::unordered_set<std::uint64_t> seen;
  seen.reserve(o.edges * 2);
  std::vector<Edge> edges;
  edges.reserve(o.edges);
  while (edges.size() < o.edges) {
    const auto u = static_cast<std::uint32_t>(skewed ? draw(all_cum) : rng.below(o.nodes));
    const auto cu = static_cast<std::uint32_t>(g.labels[u]);
    std::uint32_t cv = cu;
    if (rng.uniform() >= o.homophily) {
      cv = static_cast<std::uint32_t>(rng.below(o.classes - 1));
      if (cv >= cu) ++cv;
    }
    const auto& pool = members[cv];
    const std::uint32_t v = pool[skewed ? draw(class_cum[cv]) : rng.below(pool.size())];
    if (u == v) continue;
    const Edge e{std::min(u, v), std::max(u, v)};
    if (!seen.insert((std::uint64_t{e.src} << 32) | e.dst).second) continue;
    edges.push_back(e);
  }
  BuildOptions build;
  build.source = "csbm";
  Graph structure = build_graph(o.nodes, std::move(edges), build);
  structure.labels = std::move(g.labels);

  if (o.feature_dim > 0 && o.features == CsbmFeatures::kWords) {
    add_word_features(structure, o, rng);
  } else if (o.feature_dim > 0) {
    // Features: class means and isotropic noise, both scaled by 1/sqrt(d).
    const double scale = 1.0 / std::sqrt(static_cast<double>(o.feature_dim));
    std::vector<double> means(std::size_t{o.classes} * o.feature_dim);
    for (double& x : means) x = o.signal * scale * rng.normal();
    structure.feature_dim = o.feature_dim;
    structure.features.resize(std::size_t{o.nodes} * o.feature_dim);
    for (std::uint32_t v = 0; v < o.nodes; ++v) {
      const double* mu =
          means.data() + static_cast<std::size_t>(structure.labels[v]) * o.feature_dim;
      float* x = structure.features.data() + std::size_t{v} * o.feature_dim;
      for (std::uint32_t j = 0; j < o.feature_dim; ++j)
        x[j] = static_cast<float>(mu[j] + scale * rng.normal());
    }
  }
  add_public_split(structure, o.classes);
  return structure;
}

Graph generate_power_law(const PowerLawOptions& o) {
  std::uint64_t n = o.nodes;
  if (n == 0) {
    n = 1;
    while (n < std::max<std::uint64_t>(o.edges / 8, 2)) n <<= 1;
  }
  if (n > UINT32_MAX - 1) throw common::UsageError("powerlaw: too many nodes for 32-bit node ids");
  if (static_cast<double>(o.edges) > 0.25 * static_cast<double>(n) * static_cast<double>(n - 1)) {
    throw common::UsageError("powerlaw: " + std::to_string(o.edges) + " edges is too dense for " +
                                 std::to_string(n) + " nodes",
                             "raise --nodes or lower --edges");
  }
  int scale = 0;
  while ((std::uint64_t{1} << scale) < n) ++scale;

  // Rounds of parallel R-MAT sampling in fixed chunks (each chunk its own stream) until enough
  // distinct pairs exist; keys are (src << 32 | dst) with src < dst in generator ids.
  constexpr std::uint64_t kChunk = std::uint64_t{1} << 20;
  std::vector<std::uint64_t> keys;
  for (std::uint64_t round = 0; keys.size() < o.edges; ++round) {
    if (round > 64)
      throw common::RunError("powerlaw: could not reach the edge count (graph too dense)");
    const std::uint64_t want = (o.edges - keys.size()) + (o.edges - keys.size()) / 8 + 1024;
    const std::uint64_t chunks = (want + kChunk - 1) / kChunk;
    const std::size_t base = keys.size();
    keys.resize(base + chunks * kChunk);
    std::vector<std::uint64_t> produced(chunks, 0);
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t c = 0; c < static_cast<std::int64_t>(chunks); ++c) {
      SplitMix64 rng(mix(mix(o.seed, round), static_cast<std::uint64_t>(c)));
      std::uint64_t* out = keys.data() + base + static_cast<std::uint64_t>(c) * kChunk;
      std::uint64_t count = 0;
      for (std::uint64_t i = 0; i < kChunk; ++i) {
        std::uint64_t u = 0, v = 0;
        for (int level = 0; level < scale; ++level) {
          const double r = rng.uniform();
          const std::uint64_t bu = r >= 0.76 ? 1 : 0;                     // c + d = 0.24
          const std::uint64_t bv = (r >= 0.57 && r < 0.76) || r >= 0.95;  // b, d
          u = (u << 1) | bu;
          v = (v << 1) | bv;
        }
        if (u == v || u >= n || v >= n) continue;
        if (u > v) std::swap(u, v);
        out[count++] = (u << 32) | v;
      }
      produced[static_cast<std::size_t>(c)] = count;
    }
    std::size_t w = base;
    for (std::uint64_t c = 0; c < chunks; ++c) {
      const std::uint64_t* from = keys.data() + base + c * kChunk;
      std::copy(from, from + produced[c], keys.data() + w);
      w += produced[c];
    }
    keys.resize(w);
    radix_sort(keys, 32 + scale);
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  }
  // Drop the surplus: seeded draws without replacement, then compact (order stays sorted).
  if (keys.size() > o.edges) {
    SplitMix64 rng(mix(o.seed, 0x64726f70));
    std::vector<std::uint8_t> drop(keys.size(), 0);
    std::uint64_t to_drop = keys.size() - o.edges;
    while (to_drop > 0) {
      const std::uint64_t i = rng.below(keys.size());
      if (!drop[i]) {
        drop[i] = 1;
        --to_drop;
      }
    }
    std::size_t w = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (!drop[i]) keys[w++] = keys[i];
    }
    keys.resize(w);
  }
  keys.shrink_to_fit();

  // Scramble node ids so that hubs are not all at low ids (as Graph500 does).
  std::vector<std::uint32_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0u);
  SplitMix64 prng(mix(o.seed, 0x7065726d));
  for (std::uint64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[prng.below(i + 1)]);
  std::vector<Edge> edges(keys.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(keys.size()); ++i) {
    const std::uint64_t k = keys[static_cast<std::size_t>(i)];
    const std::uint32_t a = perm[k >> 32], b = perm[k & 0xffffffffu];
    edges[static_cast<std::size_t>(i)] = Edge{std::min(a, b), std::max(a, b)};
  }
  std::vector<std::uint64_t>().swap(keys);
  BuildOptions build;
  build.source = "powerlaw";
  build.duplicates = DuplicatePolicy::kKeep;  // distinct by construction; skip the check
  return build_graph(static_cast<std::uint32_t>(n), std::move(edges), build);
}

std::uint64_t stream_power_law(const PowerLawOptions& o, const std::string& dir, int gzip_level,
                               bool overwrite) {
  std::uint64_t n = o.nodes;
  if (n == 0) {
    n = 1;
    while (n < std::max<std::uint64_t>(o.edges / 8, 2)) n <<= 1;
  }
  if (n > UINT32_MAX - 1) throw common::UsageError("powerlaw: too many nodes for 32-bit node ids");
  int scale = 0;
  while ((std::uint64_t{1} << scale) < n) ++scale;
  namespace fs = std::filesystem;
  if (fs::exists(dir) && !overwrite) {
    throw common::UsageError("output graph directory '" + dir + "' already exists",
                             "pass --overwrite to replace it, or choose another directory");
  }
  std::vector<std::uint32_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0u);
  SplitMix64 prng(mix(o.seed, 0x7065726d));
  for (std::uint64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[prng.below(i + 1)]);

  common::AtomicDirectory out(dir);
  const fs::path raw = fs::path(out.temp_path()) / "raw";
  fs::create_directories(raw);
  GzipWriter edges((raw / "edge.csv.gz").string(), gzip_level);
  // Chunks of 2^20 pairs, each from its own stream, drawn on all threads and written in order.
  constexpr std::uint64_t kChunk = std::uint64_t{1} << 20;
  const int threads = std::max(1, omp_threads());
  std::vector<std::string> text(static_cast<std::size_t>(threads));
  for (std::uint64_t first = 0; first < o.edges; first += kChunk * threads) {
#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (int t = 0; t < threads; ++t) {
      std::string& buf = text[static_cast<std::size_t>(t)];
      buf.clear();
      const std::uint64_t begin = first + static_cast<std::uint64_t>(t) * kChunk;
      if (begin >= o.edges) continue;
      const std::uint64_t count = std::min(kChunk, o.edges - begin);
      SplitMix64 rng(mix(mix(o.seed, 0x73747265616dULL), begin / kChunk));
      char line[32];
      for (std::uint64_t i = 0; i < count;) {
        std::uint64_t u = 0, v = 0;
        for (int level = 0; level < scale; ++level) {
          const double r = rng.uniform();
          u = (u << 1) | (r >= 0.76 ? 1 : 0);                               // c + d = 0.24
          v = (v << 1) | (((r >= 0.57 && r < 0.76) || r >= 0.95) ? 1 : 0);  // b, d
        }
        if (u == v || u >= n || v >= n) continue;  // redrawn
        const std::uint32_t a = perm[u], b = perm[v];
        char* p = std::to_chars(line, line + 16, std::min(a, b)).ptr;
        *p++ = ',';
        p = std::to_chars(p, p + 16, std::max(a, b)).ptr;
        *p++ = '\n';
        buf.append(line, p);
        ++i;
      }
    }
    for (const std::string& buf : text) edges.write(buf);
  }
  edges.close();
  std::uint64_t bytes = edges.bytes_written();
  for (const auto& [name, value] :
       {std::pair<const char*, std::uint64_t>{"num-node-list.csv.gz", n},
        {"num-edge-list.csv.gz", o.edges}}) {
    GzipWriter w((raw / name).string(), gzip_level);
    w.write(std::to_string(value) + "\n");
    w.close();
    bytes += w.bytes_written();
  }
  out.commit();
  return bytes;
}

}  // namespace sparsetrain::teddy
