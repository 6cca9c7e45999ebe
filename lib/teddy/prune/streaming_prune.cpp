// The out-of-core TEDDY prune (see streaming_prune.h).
#include "teddy/prune/streaming_prune.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>

#include "common/atomic_file.h"
#include "common/error.h"
#include "teddy/graph/graph.h"
#include "teddy/graph/graph_io.h"
#include "teddy/graph/gzip_file.h"
#include "teddy/prune/edge_selection.h"

namespace sparsetrain::teddy {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kBins = 1 << 16;

std::uint32_t bits_of(float score) {
  std::uint32_t b;
  std::memcpy(&b, &score, sizeof b);
  return b;  // scores are >= 0 (or +inf): unsigned bit order is value order
}

struct Input {
  std::string edge_file;
  bool whitespace = false;
  std::uint32_t num_nodes = 0;  // 0: an edge list, counted in pass 1
  std::string dir;              // the OGB directory, empty for an edge list
};

Input input_of(const std::string& graph) {
  Input in;
  if (fs::is_directory(graph)) {
    in.dir = graph;
    in.edge_file = (fs::path(graph) / "raw" / "edge.csv.gz").string();
    in.num_nodes = read_node_count(graph);
    if (dataset_info(graph).directed) {
      throw common::UsageError("'" + in.edge_file + "' lists directed edges",
                               "the out-of-core prune reads undirected edge files; symmetrize "
                               "it in memory first (teddy prune --symmetrize on a larger machine)");
    }
  } else {
    in.edge_file = graph;
    in.whitespace = true;
  }
  return in;
}

// Copies the node data of an OGB directory (everything but the edge files) into `out`.
void copy_node_files(const std::string& dir, const fs::path& out) {
  fs::create_directories(out / "raw");
  for (const char* name : {"num-node-list.csv.gz", "node-feat.csv.gz", "node-label.csv.gz"}) {
    const fs::path from = fs::path(dir) / "raw" / name;
    if (fs::exists(from)) fs::copy_file(from, out / "raw" / name);
  }
  if (fs::is_directory(fs::path(dir) / "split")) {
    fs::copy(fs::path(dir) / "split", out / "split", fs::copy_options::recursive);
  }
}

}  // namespace

std::uint64_t streaming_prune_bytes(std::uint64_t num_nodes, std::size_t levels) {
  return num_nodes * 24 + (levels + 1) * kBins * sizeof(std::uint64_t) + (std::uint64_t{1} << 20);
}

StreamingPruneResult prune_streaming(const std::string& graph, const StreamingPruneOptions& o,
                                     const std::function<void(const std::string&, int)>& pass) {
  if (o.scorer != "teddy" && o.scorer != "degree") {
    throw common::UsageError(
        "the out-of-core prune scores with teddy or degree, not '" + o.scorer + "'",
        "use --scorer teddy or degree, or a --mem the in-memory prune fits");
  }
  ST_ASSERT(o.out_dirs.empty() || o.out_dirs.size() == o.sparsities.size(),
            "one output directory per level");
  for (const std::string& d : o.out_dirs) {
    if (!fs::exists(d)) continue;
    if (!o.overwrite) {
      throw common::UsageError("output graph directory '" + d + "' already exists",
                               "pass --overwrite to replace it, or choose another --out-graph");
    }
    if (!fs::exists(fs::path(d) / "raw" / "num-node-list.csv.gz")) {
      throw common::UsageError("'" + d + "' exists and is not a graph directory",
                               "choose a new --out-graph");
    }
  }
  const Input in = input_of(graph);
  StreamingPruneResult r;
  const auto start = [&](const std::string& name) {
    ++r.passes;
    if (pass) pass(name, r.passes);
  };
  const auto stream = [&](const std::function<void(const Edge*, std::size_t)>& block) {
    r.bytes_read += stream_edge_file(in.edge_file, in.whitespace, in.num_nodes, block);
  };

  // 1. Degrees: a row's CSR length (a self loop is one entry).
  start("degrees");
  std::vector<std::uint64_t> degree(in.num_nodes);
  stream([&](const Edge* e, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t hi = std::max(e[i].src, e[i].dst);
      if (hi >= degree.size()) degree.resize(std::size_t{hi} + 1, 0);  // edge lists only
      ++degree[e[i].src];
      if (e[i].src != e[i].dst)
        ++degree[e[i].dst];
      else
        ++r.self_loops;
    }
    r.num_edges += n;
  });
  r.num_nodes = degree.size();
  r.memory_bytes = streaming_prune_bytes(r.num_nodes, o.sparsities.size());
  std::vector<double> inv_sqrt(degree.size()), factor(degree.size(), 0.0);
  for (std::size_t v = 0; v < degree.size(); ++v) {
    const auto d = static_cast<double>(degree[v]);
    inv_sqrt[v] = d > 0 ? 1.0 / std::sqrt(d) : 0.0;
  }

  // 2. TEDDY's node factors, summed in edge-id order per node as the CSR rows are.
  if (o.scorer == "teddy") {  // (the degree scorer needs none)
    start("node factors");
    stream([&](const Edge* e, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) {
        factor[e[i].src] += inv_sqrt[e[i].dst];
        if (e[i].src != e[i].dst) factor[e[i].dst] += inv_sqrt[e[i].src];
      }
    });
    for (std::size_t v = 0; v < degree.size(); ++v) {
      const auto d = static_cast<double>(degree[v]);
      factor[v] = d > 0 ? factor[v] / (d * d) : 0.0;
    }
  }
  // Scores exactly as edge_scorer.cpp computes them (float64, rounded once to float32).
  const bool teddy = o.scorer == "teddy";
  if (teddy) std::vector<std::uint64_t>().swap(degree);
  const auto score = [&](const Edge& e) -> float {
    if (e.src == e.dst) return std::numeric_limits<float>::infinity();
    if (teddy) return static_cast<float>(factor[e.src] * factor[e.dst]);
    return static_cast<float>(
        1.0 / (static_cast<double>(degree[e.src]) * static_cast<double>(degree[e.dst])));
  };

  const std::size_t levels = o.sparsities.size();
  for (const double s : o.sparsities)
    r.pruned.push_back(pruned_edge_count(s, r.num_edges, r.num_edges - r.self_loops));

  // 3. Upper 16 bits of every score.
  start("score histogram");
  std::vector<std::uint64_t> high(kBins, 0);
  stream([&](const Edge* e, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) ++high[bits_of(score(e[i])) >> 16];
  });
  // The bin of each level's k-th edge (k >= 1), and how many edges lie below that bin.
  std::vector<std::uint32_t> bin(levels, 0);
  std::vector<std::uint64_t> below(levels, 0);
  for (std::size_t l = 0; l < levels; ++l) {
    if (r.pruned[l] == 0) continue;
    std::uint64_t seen = 0;
    std::uint32_t b = 0;
    while (seen + high[b] < r.pruned[l]) seen += high[b++];
    bin[l] = b;
    below[l] = seen;
  }

  // 4. Lower 16 bits inside each level's bin: the exact threshold and its tie quota.
  start("threshold histogram");
  std::vector<std::vector<std::uint64_t>> low(levels, std::vector<std::uint64_t>(kBins, 0));
  stream([&](const Edge* e, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t b = bits_of(score(e[i]));
      for (std::size_t l = 0; l < levels; ++l) {
        if (r.pruned[l] > 0 && (b >> 16) == bin[l]) ++low[l][b & 0xffff];
      }
    }
  });
  std::vector<std::uint32_t> cut(levels, 0);    // threshold bits
  std::vector<std::uint64_t> quota(levels, 0);  // edges scoring exactly the threshold to prune
  r.threshold.assign(levels, 0.0f);
  for (std::size_t l = 0; l < levels; ++l) {
    if (r.pruned[l] == 0) continue;
    std::uint64_t seen = below[l];
    std::uint32_t b = 0;
    while (seen + low[l][b] < r.pruned[l]) seen += low[l][b++];
    cut[l] = (bin[l] << 16) | b;
    quota[l] = r.pruned[l] - seen;
    std::memcpy(&r.threshold[l], &cut[l], sizeof(float));
  }
  std::vector<std::vector<std::uint64_t>>().swap(low);

  // 5. The kept edges of every level: below the threshold pruned, at it the first `quota` (in
  // edge-id order) pruned, above it kept — the in-memory (score, id) order.
  start("write");
  std::vector<std::unique_ptr<common::AtomicDirectory>> outs;
  std::vector<std::unique_ptr<GzipWriter>> writers;
  for (const std::string& d : o.out_dirs) {
    outs.push_back(std::make_unique<common::AtomicDirectory>(d));
    const fs::path tmp(outs.back()->temp_path());
    if (!in.dir.empty()) {
      copy_node_files(in.dir, tmp);
    } else {
      fs::create_directories(tmp / "raw");
      GzipWriter count((tmp / "raw" / "num-node-list.csv.gz").string(), o.gzip_level);
      count.write(std::to_string(r.num_nodes) + "\n");
      count.close();
    }
    writers.push_back(
        std::make_unique<GzipWriter>((tmp / "raw" / "edge.csv.gz").string(), o.gzip_level));
  }
  std::vector<std::uint64_t> ties(levels, 0), kept(levels, 0);
  if (levels > 0) {
    stream([&](const Edge* e, std::size_t n) {
      std::vector<std::string> lines(writers.size());
      for (std::size_t i = 0; i < n; ++i) {
        const std::uint32_t b = bits_of(score(e[i]));
        for (std::size_t l = 0; l < levels; ++l) {
          bool pruned = false;
          if (r.pruned[l] > 0) pruned = b < cut[l] || (b == cut[l] && ties[l]++ < quota[l]);
          if (pruned) continue;
          ++kept[l];
          if (l < writers.size()) {
            std::string& t = lines[l];
            t += std::to_string(std::min(e[i].src, e[i].dst));
            t += ',';
            t += std::to_string(std::max(e[i].src, e[i].dst));
            t += '\n';
          }
        }
      }
      for (std::size_t l = 0; l < writers.size(); ++l) writers[l]->write(lines[l]);
    });
  }
  for (std::size_t l = 0; l < writers.size(); ++l) {
    writers[l]->close();
    r.bytes_written += writers[l]->bytes_written();
    const fs::path tmp(outs[l]->temp_path());
    GzipWriter count((tmp / "raw" / "num-edge-list.csv.gz").string(), o.gzip_level);
    count.write(std::to_string(kept[l]) + "\n");
    count.close();
    outs[l]->commit();
  }
  for (std::size_t l = 0; l < levels; ++l) {
    ST_ASSERT(kept[l] == r.num_edges - r.pruned[l], "streaming prune kept the wrong count");
  }
  return r;
}

}  // namespace sparsetrain::teddy
