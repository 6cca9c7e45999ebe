// `teddy prune` for an edge file larger than memory: passes over the (gzip or plain) file with
// O(nodes) memory, the same kept edges as the in-memory prune (edge_scorer.h + edge_selection.h)
// bit for bit — same float64 node factors summed in the same order (a node's neighbours in
// edge-id order, as the CSR rows hold them), same float32 scores, same (score, edge id) order:
//   1. degrees (and the edge and self-loop counts; the node count of an edge list)
//   2. TEDDY's node factors g[v] = d_v^-2 · Σ_{u∈N(v)} d_u^-1/2  (degree scorer: none needed)
//   3. a histogram of the scores' upper 16 bits (float32 bits order as the values: scores >= 0)
//   4. per level, a histogram of the lower 16 bits inside the bin that holds its k-th edge: the
//      exact threshold score t and how many of the edges scoring t fall inside the first k
//   5. the kept edges of every level, written as each level's OGB directory
// Every line of the file is one edge with the id of its line (the in-memory loader's
// `--duplicates keep`; identical to its default merge for files without repeated pairs, which
// this path does not look for: that would need memory per edge). Self loops are kept and count
// in m, as in memory. Node data (features, labels, splits) is copied from the input directory
// file by file.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sparsetrain::teddy {

struct StreamingPruneOptions {
  std::string scorer = "teddy";       // teddy | degree
  std::vector<double> sparsities;     // ascending fractions of the undirected edges to prune
  std::vector<std::string> out_dirs;  // one OGB directory per level, or empty: count only
  bool overwrite = false;
  int gzip_level = 1;
};

struct StreamingPruneResult {
  std::uint64_t num_nodes = 0, num_edges = 0, self_loops = 0;
  std::vector<std::uint64_t> pruned;  // per level: k = floor(s · m), capped at the non-loops
  std::vector<float> threshold;       // per level: the score of its k-th pruned edge
  std::uint64_t bytes_read = 0;       // on disk, over all passes
  std::uint64_t bytes_written = 0;
  std::uint64_t memory_bytes = 0;  // what the passes allocate (streaming_prune_bytes)
  int passes = 0;
};

// Bytes the streaming passes allocate for `num_nodes` nodes and `levels` levels: 24 per node
// (degree, d^-1/2, factor) and 512 KiB of histogram per level and one more, plus 1 MiB for the
// edge block and the text of the lines written.
std::uint64_t streaming_prune_bytes(std::uint64_t num_nodes, std::size_t levels);

// Prunes `graph` (an OGB raw directory, or an edge-list file) as above. `pass(name, index)` is
// called as each pass starts (progress). UsageError for a bad input (as the loaders), a scorer
// other than teddy or degree, or an existing output without `overwrite`.
StreamingPruneResult prune_streaming(const std::string& graph, const StreamingPruneOptions& options,
                                     const std::function<void(const std::string&, int)>& pass = {});

}  // namespace sparsetrain::teddy
