// OGB raw / edge-list readers and the OGB writer; see graph_io.h.
#include "teddy/graph/graph_io.h"

#include <libdeflate.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <system_error>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/memory_check.h"
#include "common/timer.h"
#include "teddy/graph/gzip_file.h"
#include "teddy/graph/text_parse.h"

namespace sparsetrain::teddy {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail_at(const std::string& where, const std::string& what,
                          const std::string& hint = "fix or regenerate the file") {
  throw common::UsageError("'" + where + "': " + what, hint);
}

std::string show(std::string_view line) {
  std::string text(line.substr(0, 60));
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
  }
  return "'" + text + (line.size() > 60 ? "...'" : "'");
}

// One edge line into `out`. `where()` gives "FILE:LINE" (built only on error). Returns false for
// a line that carries no edge (comment or blank, edge lists only).
template <typename WhereFn>
bool parse_edge_line(std::string_view line, bool whitespace, std::uint32_t num_nodes, Edge& out,
                     const WhereFn& where) {
  if (whitespace) {
    std::size_t i = 0;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    if (i == line.size() || line[i] == '#' || line[i] == '%') return false;
  }
  LineCursor cur(line, whitespace);
  // Ids must fit a 32-bit node id below UINT32_MAX (the node count itself must fit in 32 bits).
  const std::uint64_t max_id = num_nodes > 0 ? num_nodes - 1 : UINT32_MAX - 1;
  std::uint64_t a = 0, b = 0;
  const bool ok_a = cur.read_u64(a, UINT64_MAX);
  const bool sep = ok_a && cur.skip_separator();
  const bool ok_b = sep && cur.read_u64(b, UINT64_MAX);
  if (!ok_b || !cur.at_end()) {
    LineCursor count(line, whitespace);
    const std::size_t fields = count.count_fields();
    if (fields != 2) {
      fail_at(where(), "expected 2 columns (src" + std::string(whitespace ? " " : ",") +
                           "dst), got " + std::to_string(fields) + ": " + show(line));
    }
    fail_at(where(), "not a pair of non-negative integers: " + show(line));
  }
  if (a > max_id || b > max_id) {
    fail_at(where(),
            "node id " + std::to_string(std::max(a, b)) +
                (num_nodes > 0 ? " is out of range (node count " + std::to_string(num_nodes) + ")"
                               : " exceeds the 32-bit node ids"),
            "node ids are 0-based and must be below the node count");
  }
  out = Edge{static_cast<std::uint32_t>(a), static_cast<std::uint32_t>(b)};
  return true;
}

// Reads up to 10 decimal digits at p (< 10^10, so no overflow); returns the end, or nullptr when
// there are none or more than 10 (the general parser then handles the line).
inline const char* read_short_u64(const char* p, const char* end, std::uint64_t& value) {
  const char* start = p;
  std::uint64_t v = 0;
  while (p < end && static_cast<unsigned char>(*p - '0') < 10) {
    v = v * 10 + static_cast<std::uint64_t>(*p - '0');
    ++p;
    if (p - start > 10) return nullptr;
  }
  value = v;
  return p == start ? nullptr : p;
}

// Parses the lines of text[begin, end) — whole lines, the first numbered first_line — into out.
// The common shape "digits SEP digits\n" (SEP ',' or, in edge lists, one blank) takes a fast path
// with no per-line search; every other line (comments, CRLF, errors) goes through parse_edge_line,
// so messages and accepted syntax are those of the general parser. Returns the edges written.
std::size_t parse_edge_lines(const char* begin, const char* end, bool whitespace,
                             std::uint32_t num_nodes, const std::string& name,
                             std::uint64_t first_line, Edge* out) {
  const std::uint64_t max_id = num_nodes > 0 ? num_nodes - 1 : UINT32_MAX - 1;
  std::uint64_t line_no = first_line;
  const auto where = [&] { return name + ":" + std::to_string(line_no); };
  std::size_t n = 0;
  const char* p = begin;
  while (p < end) {
    std::uint64_t a = 0, b = 0;
    const char* q = read_short_u64(p, end, a);
    if (q != nullptr && q < end && (*q == ',' || (whitespace && (*q == ' ' || *q == '\t')))) {
      q = read_short_u64(q + 1, end, b);
      if (q != nullptr && (q == end || *q == '\n') && a <= max_id && b <= max_id) {
        out[n++] = Edge{static_cast<std::uint32_t>(a), static_cast<std::uint32_t>(b)};
        p = q == end ? end : q + 1;
        ++line_no;
        continue;
      }
    }
    const void* nl = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
    const char* line_end = nl != nullptr ? static_cast<const char*>(nl) : end;
    if (parse_edge_line(std::string_view(p, static_cast<std::size_t>(line_end - p)), whitespace,
                        num_nodes, out[n], where)) {
      ++n;
    }
    p = line_end == end ? end : line_end + 1;
    ++line_no;
  }
  return n;
}

// Closes the gaps that comment and blank lines (edge lists) left: slice i holds got[i] edges at
// pairs[first[i]]. Returns the edge count.
std::size_t compact_slices(std::vector<Edge>& pairs, const std::vector<std::uint64_t>& first,
                           const std::vector<std::uint64_t>& got) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (n != first[i]) std::copy_n(pairs.begin() + first[i], got[i], pairs.begin() + n);
    n += got[i];
  }
  pairs.resize(n);
  return n;
}

struct DecompressorFree {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

// A GzipWriter file: every member inflated into a per-thread buffer (1 MiB, cache-resident) and
// parsed straight into its slice of `pairs` — members in parallel, no whole-file text. Returns
// false, with nothing thrown, when a member does not match its index (wrong size or line count,
// not ending at a line end, corrupt data): the caller then reads the file as one stream, which
// reports any damage. Parse errors are thrown with the file's own line numbers.
bool parse_indexed_edge_file(std::string_view file, const std::vector<GzipMember>& members,
                             bool whitespace, std::uint32_t num_nodes, const std::string& path,
                             std::vector<Edge>& pairs) {
  const std::size_t count = members.size();
  std::vector<std::uint64_t> first(count + 1, 0);  // first[j]: lines before member j
  for (std::size_t j = 0; j < count; ++j) first[j + 1] = first[j] + members[j].lines;
  pairs.assign(first.back(), Edge{});
  std::vector<std::uint64_t> got(count, 0);
  std::vector<std::exception_ptr> error(count);
  std::vector<std::uint8_t> mismatch(count, 0);
#pragma omp parallel
  {
    std::unique_ptr<libdeflate_decompressor, DecompressorFree> d(libdeflate_alloc_decompressor());
    std::string text;
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t jj = 0; jj < static_cast<std::int64_t>(count); ++jj) {
      const auto j = static_cast<std::size_t>(jj);
      const GzipMember& m = members[j];
      if (!d) {
        mismatch[j] = 1;
        continue;
      }
      if (text.size() < m.text_bytes) text.resize(m.text_bytes);
      std::size_t used = 0, made = 0;
      const libdeflate_result r = libdeflate_gzip_decompress_ex(
          d.get(), file.data() + m.offset, m.bytes, text.data(), m.text_bytes, &used, &made);
      const char* b = text.data();
      const char* e = text.data() + made;
      std::uint64_t lines = static_cast<std::uint64_t>(std::count(b, e, '\n'));
      if (made > 0 && e[-1] != '\n') ++lines;
      if (r != LIBDEFLATE_SUCCESS || used != m.bytes || made != m.text_bytes || lines != m.lines ||
          (j + 1 < count && made > 0 && e[-1] != '\n')) {
        mismatch[j] = 1;
        continue;
      }
      try {
        got[j] = parse_edge_lines(b, e, whitespace, num_nodes, path, first[j] + 1,
                                  pairs.data() + first[j]);
      } catch (...) {
        error[j] = std::current_exception();
      }
    }
  }
  for (std::size_t j = 0; j < count; ++j) {
    if (mismatch[j]) {
      pairs = {};
      return false;
    }
    if (error[j]) std::rethrow_exception(error[j]);
  }
  compact_slices(pairs, first, got);
  return true;
}

// Reads an edge file (gzip or plain) and parses it on all threads: GzipWriter files member by
// member, any other file inflated whole and then parsed in chunks.
std::vector<Edge> read_edge_file(const std::string& path, bool whitespace, std::uint32_t num_nodes,
                                 LoadReport& report) {
  std::vector<Edge> pairs;
  std::uint64_t file_bytes = 0;
  {
    const TextBuffer file = read_file_bytes(path);
    file_bytes = file.size();
    pairs = parse_edge_file_bytes(file.view(), whitespace, path, num_nodes);
  }  // the file goes before the CSR is built
  report.bytes_read += file_bytes;
  report.edge_file_bytes += file_bytes;
  return pairs;
}

// A file of one integer per line, exactly `rows` lines (rows = 0: any count).
template <typename T>
std::vector<T> read_int_column(const std::string& path, std::uint64_t rows, std::int64_t min_value,
                               std::int64_t max_value, const std::string& what, LoadReport& report,
                               const std::string& range_hint = "fix or regenerate the file") {
  TextFileReader reader(path);
  std::vector<T> values;
  if (rows > 0) values.reserve(rows);
  std::string_view line;
  while (reader.next_line(line)) {
    LineCursor cur(line, false);
    std::int64_t v = 0;
    if (!cur.read_i64(v) || !cur.at_end()) {
      LineCursor count(line, false);
      if (count.count_fields() != 1) {
        fail_at(reader.where(), "expected 1 column (" + what + "), got " +
                                    std::to_string(count.count_fields()) + ": " + show(line));
      }
      fail_at(reader.where(), "not an integer " + what + ": " + show(line));
    }
    if (v < min_value || v > max_value) {
      fail_at(reader.where(),
              what + " " + std::to_string(v) + " is out of range [" + std::to_string(min_value) +
                  ", " + std::to_string(max_value) + "]",
              range_hint);
    }
    values.push_back(static_cast<T>(v));
  }
  report.bytes_read += reader.file_bytes();
  if (rows > 0 && values.size() != rows) {
    fail_at(path,
            "has " + std::to_string(values.size()) + " rows, expected " + std::to_string(rows) +
                " (one per node)",
            "the file does not belong to this graph's num-node-list.csv.gz");
  }
  return values;
}

std::uint64_t read_single_count(const std::string& path, std::int64_t max_value,
                                const std::string& what, LoadReport& report) {
  const auto v = read_int_column<std::int64_t>(path, 0, 0, max_value, what, report);
  if (v.size() != 1) {
    fail_at(path, "expected exactly one line (" + what + "), got " + std::to_string(v.size()));
  }
  return static_cast<std::uint64_t>(v[0]);
}

void read_features(const std::string& path, Graph& g, LoadReport& report) {
  TextFileReader reader(path);
  std::string_view line;
  std::uint64_t row = 0;
  while (reader.next_line(line)) {
    if (row == 0) {
      LineCursor count(line, false);
      const std::size_t dim = count.count_fields();
      if (dim == 0) fail_at(reader.where(), "empty feature row");
      g.feature_dim = static_cast<std::uint32_t>(dim);
      const std::uint64_t bytes = std::uint64_t{g.num_nodes} * dim * sizeof(float);
      common::require_memory(bytes,
                             "'" + path + "': " + std::to_string(g.num_nodes) + " nodes x " +
                                 std::to_string(dim) + " features (fp32)",
                             "check raw/num-node-list.csv.gz and the feature rows' width");
      g.features.resize(std::uint64_t{g.num_nodes} * dim);
    }
    if (row >= g.num_nodes) {
      fail_at(reader.where(),
              "more feature rows than the " + std::to_string(g.num_nodes) + " nodes",
              "the file does not belong to this graph's num-node-list.csv.gz");
    }
    LineCursor cur(line, false);
    float* out = g.features.data() + row * g.feature_dim;
    for (std::uint32_t j = 0; j < g.feature_dim; ++j) {
      if ((j > 0 && !cur.skip_separator()) || !cur.read_f32(out[j])) {
        LineCursor count(line, false);
        const std::size_t fields = count.count_fields();
        if (fields != g.feature_dim) {
          fail_at(reader.where(), "expected " + std::to_string(g.feature_dim) +
                                      " feature columns, got " + std::to_string(fields));
        }
        fail_at(reader.where(), "column " + std::to_string(j + 1) + " is not a finite number");
      }
    }
    if (!cur.at_end()) {
      LineCursor count(line, false);
      fail_at(reader.where(), "expected " + std::to_string(g.feature_dim) +
                                  " feature columns, got " + std::to_string(count.count_fields()));
    }
    ++row;
  }
  report.bytes_read += reader.file_bytes();
  if (row != g.num_nodes) {
    fail_at(path,
            "has " + std::to_string(row) + " feature rows, expected " +
                std::to_string(g.num_nodes) + " (one per node)",
            "the file does not belong to this graph's num-node-list.csv.gz");
  }
}

bool exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

void read_splits(const std::string& dir, Graph& g, LoadReport& report) {
  const fs::path split_root = fs::path(dir) / "split";
  std::error_code ec;
  if (!fs::is_directory(split_root, ec)) return;
  for (const auto& entry : fs::directory_iterator(split_root)) {
    if (!entry.is_directory()) continue;
    NodeSplit split;
    const std::string base = entry.path().string();
    const auto part = [&](const char* name) {
      const std::string path = base + "/" + name + ".csv.gz";
      if (!exists(path)) {
        fail_at(path, "missing (a split needs train, valid and test)",
                "add the file or remove the split directory");
      }
      return read_int_column<std::uint32_t>(path, 0, 0, std::int64_t{g.num_nodes} - 1, "node id",
                                            report);
    };
    split.train = part("train");
    split.valid = part("valid");
    split.test = part("test");
    g.splits[entry.path().filename().string()] = std::move(split);
  }
}

}  // namespace

std::vector<Edge> parse_edge_file_bytes(std::string_view file, bool whitespace,
                                        const std::string& name, std::uint32_t num_nodes) {
  std::vector<Edge> pairs;
  const std::vector<GzipMember> members = index_gzip_members(file);
  if (!members.empty() &&
      parse_indexed_edge_file(file, members, whitespace, num_nodes, name, pairs)) {
    return pairs;
  }
  const TextBuffer text = decode_text(file, name);
  return parse_edge_text(text.view(), whitespace, name, num_nodes);
}

std::vector<Edge> parse_edge_text(std::string_view text, bool whitespace, const std::string& name,
                                  std::uint32_t num_nodes) {
  // Chunks of about 4 MiB ending at line ends, several per thread so uneven lines balance.
  constexpr std::size_t kChunkBytes = std::size_t{4} << 20;
  std::vector<std::size_t> bounds = {0};  // [chunks + 1] byte offsets
  while (bounds.back() < text.size()) {
    std::size_t at = std::min(bounds.back() + kChunkBytes, text.size());
    if (at < text.size()) {
      const std::size_t nl = text.find('\n', at - 1);
      at = nl == std::string_view::npos ? text.size() : nl + 1;
    }
    bounds.push_back(at);
  }
  const auto chunks = static_cast<std::int64_t>(bounds.size() - 1);
  // Pass 1: lines per chunk (a last line without '\n' counts), so each chunk knows its first line
  // number and where its edges go.
  std::vector<std::uint64_t> first(bounds.size(), 0);  // first[c]: lines before chunk c
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const auto i = static_cast<std::size_t>(c);
    const char* b = text.data() + bounds[i];
    const char* e = text.data() + bounds[i + 1];
    first[i + 1] = static_cast<std::uint64_t>(std::count(b, e, '\n')) + (e[-1] != '\n' ? 1 : 0);
  }
  for (std::size_t c = 0; c < static_cast<std::size_t>(chunks); ++c) first[c + 1] += first[c];
  // Pass 2: parse each chunk into its slice; errors are kept per chunk and the earliest rethrown.
  std::vector<Edge> pairs(first.back());
  std::vector<std::uint64_t> got(static_cast<std::size_t>(chunks), 0);
  std::vector<std::exception_ptr> error(static_cast<std::size_t>(chunks));
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const auto i = static_cast<std::size_t>(c);
    try {
      got[i] = parse_edge_lines(text.data() + bounds[i], text.data() + bounds[i + 1], whitespace,
                                num_nodes, name, first[i] + 1, pairs.data() + first[i]);
    } catch (...) {
      error[i] = std::current_exception();
    }
  }
  for (const std::exception_ptr& e : error) {
    if (e) std::rethrow_exception(e);
  }
  compact_slices(pairs, first, got);
  return pairs;
}

Graph load_graph(const std::string& dir, const LoadOptions& options, LoadReport* report) {
  LoadReport local;
  LoadReport& rep = report ? *report : local;
  rep = LoadReport{};
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw common::UsageError("graph directory '" + dir + "' does not exist",
                             "pass a directory in the OGB raw layout (raw/edge.csv.gz, ...)");
  }
  const std::string raw = dir + "/raw/";
  for (const char* required : {"edge.csv.gz", "num-node-list.csv.gz"}) {
    if (!exists(raw + required)) {
      throw common::UsageError(
          "'" + raw + required + "' is missing",
          "a graph directory needs raw/edge.csv.gz and raw/num-node-list.csv.gz");
    }
  }
  const std::uint64_t n =
      read_single_count(raw + "num-node-list.csv.gz", UINT32_MAX - 1, "node count", rep);
  // Per node at least: the CSR row offset (8 B), and the label (8 B) where there are labels.
  common::require_memory(
      (n + 1) * (sizeof(std::uint64_t) + (exists(raw + "node-label.csv.gz") ? 8 : 0)),
      "node count " + std::to_string(n) + " (" + raw + "num-node-list.csv.gz)",
      "the count must be the graph's number of nodes; fix or regenerate the file");
  std::uint64_t expected_lines = 0;
  if (exists(raw + "num-edge-list.csv.gz")) {
    expected_lines = read_single_count(raw + "num-edge-list.csv.gz", INT64_MAX, "edge count", rep);
  }
  common::Timer timer;
  std::vector<Edge> pairs =
      read_edge_file(raw + "edge.csv.gz", /*whitespace=*/false, static_cast<std::uint32_t>(n), rep);
  if (expected_lines > 0 && pairs.size() != expected_lines) {
    fail_at(raw + "edge.csv.gz",
            "has " + std::to_string(pairs.size()) + " edge lines but num-edge-list.csv.gz says " +
                std::to_string(expected_lines),
            "the files do not belong together; regenerate the directory");
  }
  rep.parse_seconds = timer.seconds();
  const DatasetInfo info = dataset_info(dir);
  if (info.directed && !options.symmetrize) {
    const std::uint64_t missing = count_missing_reverse(pairs);
    throw common::UsageError(
        "'" + raw + "edge.csv.gz' lists directed edges (" +
            (info.name.empty() ? std::string("so its .sparsetrain-dataset.json says")
                               : info.name + ": OGB's add_inverse_edge is False") +
            "): " + std::to_string(missing) + " of its " + std::to_string(pairs.size()) +
            " edges have no reverse",
        "pass --symmetrize to take each edge both ways (to_undirected, as the official TEDDY "
        "script does)");
  }
  timer.reset();
  BuildOptions build = options.build;
  build.source = raw + "edge.csv.gz";
  if (options.symmetrize) build.duplicates = DuplicatePolicy::kMerge;
  Graph g = build_graph(static_cast<std::uint32_t>(n), std::move(pairs), build, &rep.build);
  rep.build_seconds = timer.seconds();
  timer.reset();
  if (options.load_features && exists(raw + "node-feat.csv.gz"))
    read_features(raw + "node-feat.csv.gz", g, rep);
  if (exists(raw + "node-label.csv.gz")) {
    // Classes are 0 … C-1 with C at most the node count: a larger label would size the
    // classifier by it (2^31 classes: terabytes).
    g.labels = read_int_column<std::int64_t>(
        raw + "node-label.csv.gz", n, 0, std::max<std::int64_t>(std::int64_t(n) - 1, 0),
        "class label", rep,
        "class labels are 0 .. C-1 with C at most the node count (" + std::to_string(n) +
            "); renumber the classes");
  }
  read_splits(dir, g, rep);
  rep.node_data_seconds = timer.seconds();
  return g;
}

std::uint64_t stream_edge_file(const std::string& path, bool whitespace, std::uint32_t num_nodes,
                               const std::function<void(const Edge*, std::size_t)>& block) {
  constexpr std::size_t kBlock = std::size_t{1} << 16;
  TextFileReader reader(path);
  std::vector<Edge> edges(kBlock);
  std::size_t n = 0;
  std::string_view line;
  const auto where = [&] { return reader.where(); };
  while (reader.next_line(line)) {
    if (parse_edge_line(line, whitespace, num_nodes, edges[n], where) && ++n == kBlock) {
      block(edges.data(), n);
      n = 0;
    }
  }
  if (n > 0) block(edges.data(), n);
  return reader.file_bytes();
}

std::uint32_t read_node_count(const std::string& dir) {
  LoadReport report;
  return static_cast<std::uint32_t>(
      read_single_count((fs::path(dir) / "raw" / "num-node-list.csv.gz").string(), UINT32_MAX - 1,
                        "node count", report));
}

std::uint64_t read_edge_count(const std::string& dir) {
  const std::string path = (fs::path(dir) / "raw" / "num-edge-list.csv.gz").string();
  if (!exists(path)) return 0;
  LoadReport report;
  return read_single_count(path, INT64_MAX, "edge count", report);
}

DatasetInfo dataset_info(const std::string& dir) {
  DatasetInfo info;
  const std::string marker = (fs::path(dir) / ".sparsetrain-dataset.json").string();
  if (exists(marker)) {
    const std::string hint = "refetch the dataset (sparsetrain data fetch NAME --force)";
    try {
      const nlohmann::json j = nlohmann::json::parse(common::read_file(marker));
      info.name = j.value("name", "");
      info.directed = j.value("directed", false);
      info.split = j.value("split", "");
    } catch (const nlohmann::json::exception& e) {
      throw common::UsageError("'" + marker + "' is not a dataset marker (" + e.what() + ")", hint);
    }
    return info;
  }
  std::string base = fs::path(dir).filename().string();
  if (base.empty()) base = fs::path(dir).parent_path().filename().string();  // "…/ogbn_arxiv/"
  if (base == "ogbn_arxiv" || base == "ogbn_papers100M") {
    info = {"ogbn-" + base.substr(5), true, "time"};
  } else if (base == "ogbn_products") {
    info = {"ogbn-products", false, "sales_ranking"};
  } else if (base == "ogbn_proteins" || base == "ogbn_mag") {
    throw common::UsageError(
        "'" + dir + "' is OGB's " +
            (base == "ogbn_mag" ? "ogbn-mag, a heterogeneous graph"
                                : "ogbn-proteins, 112 binary labels per node (ROC-AUC)"),
        "sparsetrain trains single-label node classification: ogbn-arxiv, ogbn-products, "
        "ogbn-papers100M, the Planetoid graphs, or your own in the same layout");
  }
  return info;
}

std::uint64_t count_missing_reverse(const std::vector<Edge>& pairs) {
  std::vector<std::uint64_t> keys(pairs.size());
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    keys[i] = (std::uint64_t{pairs[i].src} << 32) | pairs[i].dst;
  }
  std::sort(keys.begin(), keys.end());
  std::uint64_t missing = 0;
  for (const Edge& e : pairs) {
    const std::uint64_t reverse = (std::uint64_t{e.dst} << 32) | e.src;
    if (e.src != e.dst && !std::binary_search(keys.begin(), keys.end(), reverse)) ++missing;
  }
  return missing;
}

std::uint32_t infer_node_count(const std::vector<Edge>& pairs, const std::string& source) {
  std::uint64_t n = 0;
  for (const Edge& e : pairs)
    n = std::max<std::uint64_t>(n, std::uint64_t{std::max(e.src, e.dst)} + 1);
  // Memory is proportional to the node count: refuse ids far sparser than any real graph, which
  // are almost always a typo or a hashed id space (8 bytes per node before a single edge is kept).
  const std::uint64_t limit = 64 * std::uint64_t{pairs.size()} + (std::uint64_t{1} << 20);
  if (n > limit) {
    throw common::UsageError("'" + source + "': node id " + std::to_string(n - 1) +
                                 " is far beyond what " + std::to_string(pairs.size()) +
                                 " edges need (more than 64 ids per edge)",
                             "renumber the nodes 0..N-1, or store the graph in the OGB layout with "
                             "raw/num-node-list.csv.gz");
  }
  return static_cast<std::uint32_t>(n);
}

Graph load_edge_list(const std::string& path, const LoadOptions& options, std::uint32_t num_nodes,
                     LoadReport* report) {
  LoadReport local;
  LoadReport& rep = report ? *report : local;
  rep = LoadReport{};
  common::Timer timer;
  std::vector<Edge> pairs = read_edge_file(path, /*whitespace=*/true, num_nodes, rep);
  rep.parse_seconds = timer.seconds();
  timer.reset();
  const std::uint32_t n = num_nodes > 0 ? num_nodes : infer_node_count(pairs, path);
  BuildOptions build = options.build;
  build.source = path;
  if (options.symmetrize) build.duplicates = DuplicatePolicy::kMerge;
  Graph g = build_graph(n, std::move(pairs), build, &rep.build);
  rep.build_seconds = timer.seconds();
  return g;
}

Graph load_graph_any(const std::string& path, const LoadOptions& options, LoadReport* report) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return load_graph(path, options, report);
  if (!fs::exists(path, ec)) {
    throw common::UsageError("graph '" + path + "' does not exist",
                             "pass an OGB raw directory or an edge-list file");
  }
  return load_edge_list(path, options, 0, report);
}

void require_features(const Graph& graph, const std::string& source, const std::string& command) {
  if (!graph.has_features()) {
    throw common::UsageError(
        "graph '" + source + "' has no node features (raw/node-feat.csv.gz), which " + command +
            " needs",
        "add raw/node-feat.csv.gz (see ../shared/data/README.md for PubMed) or use "
        "a graph with features");
  }
}

namespace {

// Appends the decimal digits of v.
inline void append_u64(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// A GzipWriter fed whole lines in batches of about 1 MiB of text (GzipWriter cuts its members at
// line ends by itself, so the batch size does not change the bytes: it only saves a call a line).
class GzipLines {
 public:
  static constexpr std::size_t kBatchBytes = std::size_t{1} << 20;

  GzipLines(const std::string& path, int level) : writer_(path, level) {
    text_.reserve(kBatchBytes + 64);
  }
  // The line being built; end it with end_line().
  std::string& text() { return text_; }
  void end_line() {
    text_.push_back('\n');
    if (text_.size() >= kBatchBytes) {
      writer_.write(text_);
      text_.clear();
    }
  }
  // Writes the rest, closes (fsync) and adds the file's bytes to `rep`.
  void close(SaveReport& rep) {
    writer_.write(text_);
    text_.clear();
    writer_.close();
    rep.bytes_written += writer_.bytes_written();
  }

 private:
  GzipWriter writer_;
  std::string text_;
};

void write_int_file(const std::string& path, const std::vector<std::uint64_t>& values, int level,
                    SaveReport& rep) {
  GzipLines out(path, level);
  for (std::uint64_t v : values) {
    append_u64(out.text(), v);
    out.end_line();
  }
  out.close(rep);
}

template <typename T>
std::vector<std::uint64_t> widen(const std::vector<T>& v) {
  return std::vector<std::uint64_t>(v.begin(), v.end());
}

}  // namespace

void save_graph(const Graph& graph, const std::string& dir, const SaveOptions& options,
                SaveReport* report, const std::vector<std::uint8_t>* keep) {
  SaveReport local;
  SaveReport& rep = report ? *report : local;
  rep = SaveReport{};
  ST_ASSERT(keep == nullptr || keep->size() == graph.num_edges(),
            "keep mask must have one entry per edge");
  common::Timer timer;
  std::error_code ec;
  const fs::path target(dir);
  if (fs::exists(target, ec)) {
    const bool is_graph = fs::exists(target / "raw" / "num-node-list.csv.gz", ec);
    if (!options.overwrite || !is_graph) {
      throw common::UsageError("output graph directory '" + dir + "' already exists",
                               is_graph
                                   ? "pass --overwrite to replace it, or choose another directory"
                                   : "choose a new directory (it is not a graph directory)");
    }
  }
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, ec)) {
    throw common::UsageError("cannot create '" + dir + "': parent directory does not exist",
                             "create " + parent.string() + " first");
  }
  try {
    common::AtomicDirectory out(dir);  // removed on any throw below unless committed
    const fs::path tmp(out.temp_path());
    fs::create_directories(tmp / "raw");
    const std::string raw = (tmp / "raw").string() + "/";
    {
      GzipLines edges(raw + "edge.csv.gz", options.gzip_level);
      for (std::size_t id = 0; id < graph.edges.size(); ++id) {
        if (keep != nullptr && !(*keep)[id]) continue;
        const Edge e = graph.edges[id];
        append_u64(edges.text(), e.src);
        edges.text().push_back(',');
        append_u64(edges.text(), e.dst);
        edges.end_line();
      }
      edges.close(rep);
    }
    write_int_file(raw + "num-node-list.csv.gz", {graph.num_nodes}, options.gzip_level, rep);
    std::uint64_t num_edges = graph.num_edges();
    if (keep != nullptr)
      num_edges = static_cast<std::uint64_t>(
          std::count_if(keep->begin(), keep->end(), [](std::uint8_t k) { return k != 0; }));
    write_int_file(raw + "num-edge-list.csv.gz", {num_edges}, options.gzip_level, rep);
    if (graph.has_features()) {
      GzipLines features(raw + "node-feat.csv.gz", options.gzip_level);
      char buf[32];
      for (std::uint64_t v = 0; v < graph.num_nodes; ++v) {
        const float* row = graph.features.data() + v * graph.feature_dim;
        std::string& text = features.text();
        for (std::uint32_t j = 0; j < graph.feature_dim; ++j) {
          if (j) text.push_back(',');
          const auto r = std::to_chars(buf, buf + sizeof buf, row[j]);  // shortest round-trip
          text.append(buf, r.ptr);
        }
        features.end_line();
      }
      features.close(rep);
    }
    if (!graph.labels.empty()) {
      std::vector<std::uint64_t> labels(graph.labels.begin(), graph.labels.end());
      write_int_file(raw + "node-label.csv.gz", labels, options.gzip_level, rep);
    }
    for (const auto& [name, split] : graph.splits) {
      const fs::path sdir = tmp / "split" / name;
      fs::create_directories(sdir);
      write_int_file((sdir / "train.csv.gz").string(), widen(split.train), options.gzip_level, rep);
      write_int_file((sdir / "valid.csv.gz").string(), widen(split.valid), options.gzip_level, rep);
      write_int_file((sdir / "test.csv.gz").string(), widen(split.test), options.gzip_level, rep);
    }
    out.commit();  // replaces an existing graph (checked above), then renames
  } catch (const fs::filesystem_error& e) {
    throw common::RunError("cannot write graph '" + dir + "': " + e.code().message(),
                           "check free space and permissions");
  }
  rep.seconds = timer.seconds();
}

}  // namespace sparsetrain::teddy
