// libFuzzer harness for the graph text parsers: edge CSV (OGB raw), whitespace edge lists, and
// gzip files through the edge file reader's own path (parse_edge_file_bytes: GzipWriter's indexed
// members inflated and parsed in parallel, or any gzip inflated whole) plus zlib's gunzip_buffer.
// The contract under test: any input either parses or throws common::UsageError — never a crash,
// hang, sanitizer report or other exception. Built only with a compiler that supports
// -fsanitize=fuzzer (clang); see run_fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "teddy/graph/graph.h"
#include "teddy/graph/graph_io.h"
#include "teddy/graph/gzip_file.h"

namespace teddy = sparsetrain::teddy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t mode = data[0] % 4;
  const std::uint32_t num_nodes = data[1];  // 0 = unknown (edge lists), else the id bound
  std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
  try {
    const bool whitespace = mode == 1;
    std::vector<teddy::Edge> pairs;
    if (mode == 3) {
      try {
        (void)teddy::gunzip_buffer(text, "fuzz.gz");
      } catch (const sparsetrain::common::UsageError&) {
      }
      pairs = teddy::parse_edge_file_bytes(text, false, "fuzz.gz", num_nodes);
    } else {
      pairs = teddy::parse_edge_text(text, whitespace, "fuzz", num_nodes);
    }
    if (!pairs.empty()) {
      const std::uint32_t n = num_nodes > 0 ? num_nodes : teddy::infer_node_count(pairs, "fuzz");
      teddy::BuildOptions o;
      o.duplicates = mode == 2 ? teddy::DuplicatePolicy::kError : teddy::DuplicatePolicy::kMerge;
      const teddy::Graph g = teddy::build_graph(n, std::move(pairs), o);
      if (g.offsets.back() > 2 * g.num_edges()) std::abort();  // CSR invariant
    }
  } catch (const sparsetrain::common::UsageError&) {
    // expected for malformed input
  }
  return 0;
}
