// libFuzzer harness for the node data of an OGB graph directory (teddy/graph/graph_io.h): the
// node count, edge count, features, labels and a split part. The first byte picks the file that
// gets the rest of the input (gzip-compressed, as OGB stores it); the other files are those of a
// valid 4-node graph. load_graph reads the directory and the split is checked as teddy run checks
// it. The contract: a graph, or a common::UsageError — never a crash, hang, sanitizer report,
// other exception, or an allocation the input's sizes did not justify (ASan's allocator limit
// catches those). See run_fuzz.sh.
#include <unistd.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/error.h"
#include "teddy/graph/graph.h"
#include "teddy/graph/graph_io.h"

namespace fs = std::filesystem;
namespace teddy = sparsetrain::teddy;

namespace {

void write_gz(const fs::path& path, const void* data, std::size_t size) {
  gzFile f = gzopen(path.c_str(), "wb1");
  if (f == nullptr) std::abort();
  if (size > 0 && gzwrite(f, data, static_cast<unsigned>(size)) != static_cast<int>(size))
    std::abort();
  gzclose(f);
}

void write_gz(const fs::path& path, const std::string& text) {
  write_gz(path, text.data(), text.size());
}

// The valid 4-node graph; each input replaces one of the first six files.
struct File {
  const char* path;
  const char* text;
};
constexpr File kFiles[] = {{"raw/num-node-list.csv.gz", "4\n"},
                           {"raw/num-edge-list.csv.gz", "3\n"},
                           {"raw/node-feat.csv.gz", "1,0\n0,1\n0.5,0.5\n-1,0\n"},
                           {"raw/node-label.csv.gz", "0\n1\n0\n1\n"},
                           {"split/public/train.csv.gz", "0\n1\n"},
                           {"split/public/test.csv.gz", "3\n"},
                           {"split/public/valid.csv.gz", "2\n"},
                           {"raw/edge.csv.gz", "0,1\n1,2\n2,3\n"}};
constexpr std::size_t kFuzzed = 6;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const fs::path dir = [] {
    const fs::path d =
        fs::temp_directory_path() / ("st-fuzz-graph-dir-" + std::to_string(::getpid()));
    fs::create_directories(d / "raw");
    fs::create_directories(d / "split" / "public");
    for (const File& f : kFiles) write_gz(d / f.path, f.text);
    return d;
  }();
  const File& target = kFiles[data[0] % kFuzzed];
  write_gz(dir / target.path, data + 1, size - 1);
  try {
    const teddy::Graph g = teddy::load_graph(dir.string(), teddy::LoadOptions{});
    if (g.labels.size() != 0 && g.labels.size() != g.num_nodes) std::abort();
    if (g.has_features() && g.features.size() != std::uint64_t{g.num_nodes} * g.feature_dim)
      std::abort();
    for (const auto& [name, split] : g.splits) teddy::check_node_split(split, g.num_nodes, name);
  } catch (const sparsetrain::common::UsageError&) {
  }
  write_gz(dir / target.path, target.text);  // the valid file back for the next input
  return 0;
}
