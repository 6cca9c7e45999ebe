// Reading and writing graphs: the OGB raw node-property layout (DESIGN.md "Formats") and plain
// edge lists. Not a general CSV library: every file holds numbers only.
//
// OGB layout under DIR:
//   raw/edge.csv.gz            "src,dst" per line; undirected files store each pair once
//                              (add_inverse_edge semantics: the reverse direction is implied)
//   raw/num-node-list.csv.gz   one line: node count
//   raw/num-edge-list.csv.gz   one line: number of lines of edge.csv.gz (checked when present)
//   raw/node-feat.csv.gz       optional: one row of float32 per node
//   raw/node-label.csv.gz      optional: one integer class per node
//   split/<name>/{train,valid,test}.csv.gz   optional: node ids
//   .sparsetrain-dataset.json  optional (`data fetch` writes it): the dataset's name, whether its
//                              edges are directed, its split
// A directory exactly as OGB's NodePropPredDataset leaves it (ROOT/ogbn_arxiv with raw/, split/,
// processed/, mapping/) is this layout too: its name tells which OGB dataset it is
// (dataset_info).
// Every malformed input — bad number, wrong column count, id out of range, truncated gzip, a row
// count that disagrees with the node count — throws UsageError naming FILE:LINE.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "teddy/graph/graph.h"

namespace sparsetrain::teddy {

struct LoadOptions {
  BuildOptions build;
  // The edge file lists directed edges (OGB's add_inverse_edge = False datasets, e.g. ogbn-arxiv's
  // citations): each is taken as an undirected pair and the two directions of a pair merged —
  // PyG's to_undirected / torch_sparse's to_symmetric, as the official TEDDY arxiv script does.
  // A directory whose dataset_info says `directed` is refused without it.
  bool symmetrize = false;
  bool load_features = true;  // false skips node-feat.csv.gz (it is the largest file)
};

struct LoadReport {
  BuildReport build;
  std::uint64_t bytes_read = 0;  // on-disk bytes of all files read (compressed)
  std::uint64_t edge_file_bytes = 0;
  double parse_seconds = 0;      // reading + parsing edge.csv.gz
  double build_seconds = 0;      // CSR construction
  double node_data_seconds = 0;  // features, labels, splits
};

// What a graph directory says about itself: its .sparsetrain-dataset.json, else (a directory
// named ogbn_NAME, as OGB's NodePropPredDataset names it) OGB's metadata for NAME (master.csv):
//   ogbn_arxiv, ogbn_papers100M   directed citations, split "time"
//   ogbn_products                 undirected (each pair once), split "sales_ranking"
// Anything else: unknown (undirected, no preferred split). UsageError for the OGB node datasets
// this trainer cannot use as they are (ogbn_proteins: 112 binary labels per node, scored by
// ROC-AUC; ogbn_mag: heterogeneous), and for a malformed .sparsetrain-dataset.json.
struct DatasetInfo {
  std::string name;       // "ogbn-arxiv"; empty when unknown
  bool directed = false;  // edge.csv.gz lists directed edges: load it with symmetrize
  std::string split;      // the split to train on under split/; empty when unknown
};
DatasetInfo dataset_info(const std::string& dir);

// Directed edges (src != dst) of `pairs` whose reverse is not among them.
std::uint64_t count_missing_reverse(const std::vector<Edge>& pairs);

// Loads an OGB raw graph directory. A missing node-feat.csv.gz leaves features empty (PubMed);
// commands that need features call require_features().
Graph load_graph(const std::string& dir, const LoadOptions& options, LoadReport* report = nullptr);

// Loads a plain edge list: "src dst" or "src,dst" per line, '#' comments and blank lines skipped,
// any further columns rejected. gzip or plain text. The node count is infer_node_count() unless
// `num_nodes` > 0 is given (then larger ids are an error).
Graph load_edge_list(const std::string& path, const LoadOptions& options,
                     std::uint32_t num_nodes = 0, LoadReport* report = nullptr);

// max id + 1 over `pairs`; throws UsageError naming `source` when ids are far sparser than the
// edges (more than 64 ids per edge beyond 2^20), which would cost memory for nothing.
std::uint32_t infer_node_count(const std::vector<Edge>& pairs, const std::string& source);

// A directory is loaded as OGB raw, a file as an edge list.
Graph load_graph_any(const std::string& path, const LoadOptions& options,
                     LoadReport* report = nullptr);

// Throws UsageError when the graph has no node features (e.g. PubMed in ../shared/data).
void require_features(const Graph& graph, const std::string& source, const std::string& command);

struct SaveOptions {
  int gzip_level = 6;  // 1 for speed on very large graphs
  bool overwrite =
      false;  // replace an existing graph directory (one with raw/num-node-list.csv.gz)
};

struct SaveReport {
  std::uint64_t bytes_written = 0;
  double seconds = 0;
};

// Writes `graph` in the OGB layout (each undirected pair once, src <= dst, edge-id order; features,
// labels and splits when present). Files go to a temporary sibling directory that is renamed to
// `dir` at the end, so a failure never leaves a half-written graph. The bytes depend on the graph
// only (gzip mtime 0). Throws UsageError if `dir` exists and overwrite is off or it is not a graph.
// With `keep`, writes the subgraph of the edges with (*keep)[e] != 0 (renumbered in order, node
// data unchanged) without building it in memory.
void save_graph(const Graph& graph, const std::string& dir, const SaveOptions& options,
                SaveReport* report = nullptr, const std::vector<std::uint8_t>* keep = nullptr);

// Streams the edges of an edge file (gzip or plain; edge-list syntax when `whitespace`) in file
// order, in blocks of up to 64 Ki edges: block(edges, count). Memory: the block and zlib's
// window, not the file. The same syntax and FILE:LINE errors as the readers above; ids must be
// below `num_nodes` (0: below 2^32 - 1). Returns the on-disk bytes of the file.
std::uint64_t stream_edge_file(const std::string& path, bool whitespace, std::uint32_t num_nodes,
                               const std::function<void(const Edge*, std::size_t)>& block);

// The node count of an OGB raw directory (raw/num-node-list.csv.gz); UsageError naming the file.
std::uint32_t read_node_count(const std::string& dir);
// Its edge line count (raw/num-edge-list.csv.gz), or 0 when that optional file is absent.
std::uint64_t read_edge_count(const std::string& dir);

// Parses edge CSV / edge-list text held in memory (the fuzz harness and tests): the same code
// path as the file readers. `whitespace` selects edge-list syntax. Returns the pairs. Runs on all
// threads in ~4 MiB chunks split at line ends; errors name `name:LINE` of the earliest bad line.
std::vector<Edge> parse_edge_text(std::string_view text, bool whitespace, const std::string& name,
                                  std::uint32_t num_nodes);

// Parses the raw bytes of an edge file (gzip or plain) as the file readers do: a GzipWriter file
// member by member in parallel (each member inflated and parsed straight into its slice, no
// whole-file text), any other file inflated whole and then parse_edge_text. Throws UsageError
// naming `name` for truncated/corrupt gzip and malformed lines.
std::vector<Edge> parse_edge_file_bytes(std::string_view file, bool whitespace,
                                        const std::string& name, std::uint32_t num_nodes);

}  // namespace sparsetrain::teddy
