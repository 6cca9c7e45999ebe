// Reading and writing graphs: the OGB raw layout round-trips (structure, features, labels,
// splits, deterministic bytes), edge lists, the shared Planetoid data, and one-line errors with
// FILE:LINE for every kind of malformed input.
#include "teddy/graph/graph_io.h"

#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/file_fault_sweep.h"
#include "common/memory_check.h"
#include "teddy/graph/graph_generator.h"
#include "teddy/graph/gzip_file.h"
#include "teddy/test_graphs.h"

using namespace sparsetrain;
namespace fs = std::filesystem;

namespace {

void write_gz(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  teddy::GzipWriter w(path, 6);
  w.write(text);
  w.close();
}

// A 4-node graph directory with optional overrides of one file's content.
std::string make_dir(const test::ScratchDir& root, const std::string& name,
                     const std::map<std::string, std::string>& override = {}) {
  std::map<std::string, std::string> files = {
      {"raw/edge.csv.gz", "0,1\n1,2\n2,3\n"},
      {"raw/num-node-list.csv.gz", "4\n"},
      {"raw/num-edge-list.csv.gz", "3\n"},
      {"raw/node-feat.csv.gz", "1,0\n0,1\n0.5,2.5e-1\n-1,0\n"},
      {"raw/node-label.csv.gz", "0\n1\n0\n1\n"},
      {"split/public/train.csv.gz", "0\n1\n"},
      {"split/public/valid.csv.gz", "2\n"},
      {"split/public/test.csv.gz", "3\n"}};
  for (const auto& [k, v] : override) files[k] = v;
  const std::string dir = root / name;
  for (const auto& [k, v] : files) {
    if (v != "<absent>") write_gz(dir + "/" + k, v);
  }
  return dir;
}

std::string load_error(const std::string& dir) {
  try {
    teddy::load_graph(dir, {});
  } catch (const common::UsageError& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("a small OGB directory loads with features, labels and splits") {
  test::ScratchDir root("io-ok");
  const auto g = teddy::load_graph(make_dir(root, "g"), {});
  CHECK(g.num_nodes == 4);
  CHECK(g.num_edges() == 3);
  CHECK(g.feature_dim == 2);
  CHECK(g.features == std::vector<float>{1, 0, 0, 1, 0.5f, 0.25f, -1, 0});
  CHECK(g.labels == std::vector<std::int64_t>{0, 1, 0, 1});
  CHECK(g.splits.at("public").train == std::vector<std::uint32_t>{0, 1});
  CHECK(g.splits.at("public").test == std::vector<std::uint32_t>{3});
}

TEST_CASE("every malformed input is a usage error naming the file and line") {
  test::ScratchDir root("io-bad");
  struct Case {
    std::string file, content, expect;
  };
  const std::vector<Case> cases = {
      {"raw/edge.csv.gz", "0,1\n1,x\n2,3\n", "edge.csv.gz:2"},
      {"raw/edge.csv.gz", "0,1\n1,2,3\n2,3\n", "expected 2 columns"},
      {"raw/edge.csv.gz", "0,1\n1\n2,3\n", "edge.csv.gz:2"},
      {"raw/edge.csv.gz", "0,1\n1,2\n2,4\n", "out of range"},
      {"raw/edge.csv.gz", "0,1\n-1,2\n2,3\n", "edge.csv.gz:2"},
      {"raw/edge.csv.gz", "0,1\n1,99999999999999999999999\n2,3\n", "edge.csv.gz:2"},
      {"raw/edge.csv.gz", "0,1\n1,2\n", "num-edge-list.csv.gz says 3"},
      {"raw/num-node-list.csv.gz", "four\n", "num-node-list.csv.gz:1"},
      {"raw/node-label.csv.gz", "0\n1\n0\n", "3 rows, expected 4"},
      {"raw/node-label.csv.gz", "0\n1\n0\n1\n1\n", "5 rows, expected 4"},
      // A label sizes the classifier: 2^31 - 1 would make 2^31 classes (terabytes).
      {"raw/node-label.csv.gz", "0\n1\n2147483647\n1\n",
       "node-label.csv.gz:3': class label 2147483647 is out of range [0, 3]"},
      {"raw/node-feat.csv.gz", "1,0\n0,1\n0.5\n-1,0\n", "node-feat.csv.gz:3"},
      {"raw/node-feat.csv.gz", "1,0\n0,1\n0.5,nan\n-1,0\n", "node-feat.csv.gz:3"},
      {"raw/node-feat.csv.gz", "1,0\n0,1\n", "2 feature rows, expected 4"},
      {"split/public/valid.csv.gz", "7\n", "valid.csv.gz:1"},
      {"split/public/test.csv.gz", "<absent>", "missing"},
  };
  int i = 0;
  for (const Case& c : cases) {
    CAPTURE(c.file);
    CAPTURE(c.content);
    const std::string msg =
        load_error(make_dir(root, "bad" + std::to_string(i++), {{c.file, c.content}}));
    CAPTURE(msg);
    CHECK(msg.find(c.expect) != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
  }
}

TEST_CASE("a truncated or corrupt gzip file is a usage error, not a crash") {
  test::ScratchDir root("io-trunc");
  std::string edges;
  for (int i = 0; i < 20000; ++i)
    edges += std::to_string(i % 3) + "," + std::to_string(i % 3 + 1) + "\n";
  const std::string dir =
      make_dir(root, "g", {{"raw/num-edge-list.csv.gz", "<absent>"}, {"raw/edge.csv.gz", edges}});
  const std::string path = dir + "/raw/edge.csv.gz";
  const std::string full = common::read_file(path);
  { std::ofstream(path, std::ios::binary) << full.substr(0, full.size() / 2); }
  CHECK(load_error(dir).find("truncated") != std::string::npos);
  std::string corrupt = full;
  for (std::size_t k = 20; k < 60; ++k) corrupt[k] = static_cast<char>(corrupt[k] ^ 0x5a);
  { std::ofstream(path, std::ios::binary) << corrupt; }
  const std::string msg = load_error(dir);
  CHECK(msg.find("edge.csv.gz") != std::string::npos);
  CHECK(msg != "<no error>");
}

TEST_CASE("a missing features file loads, and require_features then fails clearly") {
  test::ScratchDir root("io-nofeat");
  const auto g = teddy::load_graph(make_dir(root, "g", {{"raw/node-feat.csv.gz", "<absent>"}}), {});
  CHECK_FALSE(g.has_features());
  CHECK_THROWS_WITH_AS(teddy::require_features(g, "g", "teddy train"),
                       doctest::Contains("no node features"), common::UsageError);
}

TEST_CASE("save then load reproduces the graph, and saving twice gives identical bytes") {
  test::ScratchDir root("io-roundtrip");
  teddy::CsbmOptions o;
  o.nodes = 300;
  o.edges = 900;
  o.classes = 3;
  o.feature_dim = 5;
  o.seed = 2;
  const auto g = teddy::generate_csbm(o);
  teddy::save_graph(g, root / "a", {});
  teddy::save_graph(g, root / "b", {});
  const auto h = teddy::load_graph(root / "a", {});
  CHECK(h.edges == g.edges);
  CHECK(h.features == g.features);  // shortest round-trip decimal is exact
  CHECK(h.labels == g.labels);
  CHECK(h.splits.at("public").valid == g.splits.at("public").valid);
  for (const char* f : {"raw/edge.csv.gz", "raw/node-feat.csv.gz", "split/public/test.csv.gz"}) {
    CAPTURE(f);
    CHECK(common::read_file(root / (std::string("a/") + f)) ==
          common::read_file(root / (std::string("b/") + f)));
  }
  CHECK_THROWS_WITH_AS(teddy::save_graph(g, root / "a", {}), doctest::Contains("already exists"),
                       common::UsageError);
  teddy::SaveOptions over;
  over.overwrite = true;
  CHECK_NOTHROW(teddy::save_graph(g, root / "a", over));
  CHECK_FALSE(fs::exists(root / "a.tmp"));
}

TEST_CASE("edge lists accept spaces, tabs, commas, comments and blank lines") {
  const auto pairs = teddy::parse_edge_text(
      "# comment\n0 1\n1\t2\n\n2,3\r\n  % also a comment\n3   0", true, "t", 0);
  CHECK(pairs == std::vector<test::Edge>{{0, 1}, {1, 2}, {2, 3}, {3, 0}});
  CHECK_THROWS_WITH_AS(teddy::parse_edge_text("0 1\n1 2 3\n", true, "t.txt", 0),
                       doctest::Contains("t.txt:2"), common::UsageError);
  CHECK_THROWS_WITH_AS(teddy::parse_edge_text("0 1\n1 -2\n", true, "t.txt", 0),
                       doctest::Contains("t.txt:2"), common::UsageError);
  CHECK_THROWS_AS(teddy::parse_edge_text("0,1\n\n", false, "csv", 0),
                  common::UsageError);  // blank in CSV
}

TEST_CASE("an edge-list file loads with the node count from the largest id") {
  test::ScratchDir root("io-el");
  { std::ofstream(root / "g.txt") << "0 5\n5 2\n"; }
  const auto g = teddy::load_graph_any(root / "g.txt", {});
  CHECK(g.num_nodes == 6);
  CHECK(g.num_edges() == 2);
}

TEST_CASE("directed input files are made undirected") {
  test::ScratchDir root("io-dir");
  const std::string dir = make_dir(
      root, "g",
      {{"raw/edge.csv.gz", "0,1\n1,0\n1,2\n2,1\n2,3\n3,2\n"}, {"raw/num-edge-list.csv.gz", "6\n"}});
  teddy::LoadOptions o;
  o.symmetrize = true;
  o.build.duplicates = teddy::DuplicatePolicy::kError;  // overridden: reverse entries are expected
  const auto g = teddy::load_graph(dir, o);
  CHECK(g.num_edges() == 3);
}

TEST_CASE("the shared Planetoid graphs load with their published counts") {
  const std::string data = SPARSETRAIN_SHARED_DATA;
  if (!fs::exists(data + "/cora/raw/edge.csv.gz")) {
    MESSAGE("no shared data; skipping");
    return;
  }
  struct Want {
    const char* name;
    std::uint32_t nodes;
    std::uint64_t edges;
    std::uint32_t dim;
    std::size_t train;
  };
  for (const Want& w :
       {Want{"cora", 2708, 5278, 1433, 140}, Want{"citeseer", 3327, 4552, 3703, 120},
        Want{"pubmed", 19717, 44324, 0, 60}}) {
    CAPTURE(w.name);
    const auto g = teddy::load_graph(data + "/" + w.name, {});
    CHECK(g.num_nodes == w.nodes);
    CHECK(g.num_edges() == w.edges);
    CHECK(g.feature_dim == w.dim);
    CHECK(g.labels.size() == w.nodes);
    CHECK(g.splits.at("public").train.size() == w.train);
    CHECK(g.splits.at("public").test.size() == 1000);
  }
}

TEST_CASE("an edge list whose ids are far sparser than its edges is refused before allocating") {
  const auto pairs = teddy::parse_edge_text("0 1\n1 4000000000\n", true, "t", 0);
  CHECK_THROWS_WITH_AS(teddy::infer_node_count(pairs, "t.txt"), doctest::Contains("far beyond"),
                       common::UsageError);
  CHECK(teddy::infer_node_count(teddy::parse_edge_text("0 1\n1 7\n", true, "t", 0), "t") == 8);
}

TEST_CASE("an injected fault while saving over a graph leaves the old graph or the new one") {
  // teddy prune --out-graph --overwrite: every write, sync and rename of the save fails once.
  test::ScratchDir root("io-faults");
  teddy::CsbmOptions o;
  o.nodes = 200;
  o.edges = 600;
  o.classes = 3;
  o.feature_dim = 4;
  o.seed = 5;
  const auto g = teddy::generate_csbm(o);
  std::vector<std::uint8_t> keep(g.num_edges());
  for (std::size_t e = 0; e < keep.size(); ++e) keep[e] = e % 3 != 0;
  const std::size_t kept = static_cast<std::size_t>(std::count(keep.begin(), keep.end(), 1));
  teddy::SaveOptions over;
  over.overwrite = true;
  const fs::path dir = root.path / "g";
  teddy::save_graph(g, dir, {});
  const int tried = test::sweep_file_faults(
      [&] { teddy::save_graph(g, dir, over, nullptr, &keep); },
      [&](bool failed) {
        const auto now = teddy::load_graph(dir, {});  // whole: it loads, checksums and all
        CHECK((now.num_edges() == g.num_edges() || now.num_edges() == kept));
        if (!failed) CHECK(now.num_edges() == kept);
        CHECK(now.features == g.features);
        CHECK(now.labels == g.labels);
        int entries = 0;
        for ([[maybe_unused]] const auto& e : fs::directory_iterator(root.path)) ++entries;
        CHECK(entries == 1);  // no g.tmp.<pid>, no g.old.<pid>
        teddy::save_graph(g, dir, over);
      });
  CHECK(tried > 40);
}

TEST_CASE("saving through a keep mask writes the same bytes as saving the filtered graph") {
  test::ScratchDir root("io-mask");
  auto g = test::triangle_pendant();
  g.labels = {0, 1, 0, 1};
  const std::vector<std::uint8_t> keep = {1, 0, 1, 1};
  teddy::save_graph(g, root / "masked", {}, nullptr, &keep);
  teddy::save_graph(teddy::filter_edges(g, keep), root / "built", {});
  for (const char* f : {"raw/edge.csv.gz", "raw/num-edge-list.csv.gz", "raw/node-label.csv.gz"}) {
    CAPTURE(f);
    CHECK(common::read_file(root / (std::string("masked/") + f)) ==
          common::read_file(root / (std::string("built/") + f)));
  }
}

TEST_CASE("the chunked parallel edge parser matches a line-by-line reading of large text") {
  // ~14 MB of text: several 4 MiB chunks, with comments and blank lines (edge-list syntax) in
  // every chunk, CRLF and padded lines that leave the fast path, and no final newline.
  std::string text;
  std::vector<test::Edge> expect;
  std::uint64_t lines = 0;
  for (std::uint32_t i = 0; i < 1200000; ++i) {
    const std::uint32_t a = (i * 2654435761u) % 1000003u;
    const std::uint32_t b = (i * 40503u + 7u) % 1000003u;
    if (i % 99991 == 0) {
      text += "# comment line " + std::to_string(i) + "\n\n";
      lines += 2;
    }
    const char* sep = i % 3 == 0 ? "," : (i % 3 == 1 ? " " : "\t");
    text += std::to_string(a) + sep + std::to_string(b) + (i % 50000 == 1 ? "  \r\n" : "\n");
    ++lines;
    expect.push_back({a, b});
  }
  text += "5 6";  // last line without a newline
  expect.push_back({5, 6});
  CHECK(text.size() > (std::size_t{12} << 20));
  CHECK(teddy::parse_edge_text(text, true, "big", 0) == expect);

  // An error deep in a later chunk names its own line, counted across chunks.
  std::string bad = text;
  const std::size_t at = bad.size() - 100;
  const std::size_t line_start = bad.rfind('\n', at) + 1;
  bad.insert(line_start, "x");
  const std::uint64_t bad_line =
      static_cast<std::uint64_t>(std::count(bad.begin(), bad.begin() + line_start, '\n')) + 1;
  CHECK(bad_line > lines - 20);  // near the end: in the last chunk
  const std::string where = "big:" + std::to_string(bad_line) + "'";
  CHECK_THROWS_WITH_AS(teddy::parse_edge_text(bad, true, "big", 0),
                       doctest::Contains(where.c_str()), common::UsageError);
  // CSV syntax: an id out of range is reported on its line, not accepted by the fast path.
  CHECK_THROWS_WITH_AS(teddy::parse_edge_text("0,1\n1,2\n2,4\n", false, "c", 4),
                       doctest::Contains("c:3"), common::UsageError);
  CHECK_THROWS_WITH_AS(teddy::parse_edge_text("0,1\n12345678901,2\n", false, "c", 0),
                       doctest::Contains("c:2"), common::UsageError);
}

TEST_CASE("read_text_file reads plain text, one gzip member and concatenated members") {
  test::ScratchDir root("io-members");
  const std::string plain = root / "plain.txt";
  { std::ofstream(plain, std::ios::binary) << "0 1\n1 2\n"; }
  std::uint64_t bytes = 0;
  CHECK(teddy::read_text_file(plain, &bytes).view() == "0 1\n1 2\n");
  CHECK(bytes == 8);

  // Member 1 is 2 MB of very compressible text, member 2 is tiny: the last member's ISIZE
  // underestimates the whole, so the output buffer must grow (member 1 is inflated again).
  std::string big;
  for (int i = 0; i < 500000; ++i) big += "7,8\n";
  write_gz(root / "m1.gz", big);
  write_gz(root / "m2.gz", "1,2\n");
  const std::string both = common::read_file(root / "m1.gz") + common::read_file(root / "m2.gz");
  { std::ofstream(root / "both.gz", std::ios::binary) << both; }
  const teddy::TextBuffer text = teddy::read_text_file(root / "both.gz", &bytes);
  CHECK(bytes == both.size());
  CHECK(text.size() == big.size() + 4);
  CHECK(text.view() == big + "1,2\n");
  // The same two members through the streaming zlib reader agree.
  teddy::TextFileReader reader(root / "both.gz");
  std::string_view line;
  std::uint64_t count = 0;
  while (reader.next_line(line)) ++count;
  CHECK(count == 500001);

  // Trailing garbage after a member and a cut inside the second member are errors naming the file.
  { std::ofstream(root / "cut.gz", std::ios::binary) << both.substr(0, both.size() - 6); }
  CHECK_THROWS_WITH_AS(teddy::read_text_file(root / "cut.gz"),
                       doctest::Contains("cut.gz': truncated"), common::UsageError);
  { std::ofstream(root / "junk.gz", std::ios::binary) << both << "junk"; }
  CHECK_THROWS_WITH_AS(teddy::read_text_file(root / "junk.gz"), doctest::Contains("junk.gz"),
                       common::UsageError);
  CHECK_THROWS_AS(teddy::read_text_file(root / "missing.gz"), common::UsageError);
}

TEST_CASE("GzipWriter writes line-aligned indexed members that zlib reads as one standard stream") {
  test::ScratchDir root("io-index");
  std::string text;
  std::vector<test::Edge> expect;
  for (std::uint32_t i = 0; i < 400000; ++i) {  // ~4.5 MB: 5 members
    const std::uint32_t a = (i * 7919u) % 100000u, b = (i * 104729u + 3u) % 100000u;
    text += std::to_string(a) + "," + std::to_string(b) + "\n";
    expect.push_back({a, b});
  }
  const std::string path = root / "edge.csv.gz";
  {
    teddy::GzipWriter w(path, 1);
    for (std::size_t at = 0; at < text.size(); at += 333333) w.write(text.substr(at, 333333));
    w.close();
  }
  const std::string file = common::read_file(path);
  const auto members = teddy::index_gzip_members(file);
  REQUIRE(members.size() == 5);
  std::uint64_t lines = 0, offset = 0;
  for (const teddy::GzipMember& m : members) {
    CHECK(m.offset == offset);
    // each member alone is a complete gzip stream to zlib, of whole lines
    const std::string part = teddy::gunzip_buffer(file.substr(m.offset, m.bytes), "member");
    CHECK(part.size() == m.text_bytes);
    CHECK(part.size() <= teddy::GzipWriter::kMemberTextBytes);
    CHECK(part.back() == '\n');
    CHECK(static_cast<std::uint64_t>(std::count(part.begin(), part.end(), '\n')) == m.lines);
    lines += m.lines;
    offset += m.bytes;
  }
  CHECK(offset == file.size());
  CHECK(lines == expect.size());
  // zlib's own concatenated-member reading (inflate + inflateReset) gives back the text
  std::string all;
  {
    z_stream z{};
    REQUIRE(inflateInit2(&z, 15 + 32) == Z_OK);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(file.data()));
    z.avail_in = static_cast<uInt>(file.size());
    std::string buf(1 << 16, '\0');
    for (;;) {
      z.next_out = reinterpret_cast<Bytef*>(buf.data());
      z.avail_out = static_cast<uInt>(buf.size());
      const int ret = inflate(&z, Z_NO_FLUSH);
      all.append(buf.data(), buf.size() - z.avail_out);
      if (ret == Z_STREAM_END && z.avail_in == 0) break;
      if (ret == Z_STREAM_END)
        inflateReset(&z);
      else
        REQUIRE(ret == Z_OK);
    }
    inflateEnd(&z);
  }
  CHECK(all == text);

  // The member-parallel parse equals the text; a bad line in member 4 names its global line.
  CHECK(teddy::parse_edge_file_bytes(file, false, "f", 0) == expect);
  std::string bad_text = text;
  const std::size_t bad_at = bad_text.find('\n', 3800000) + 1;
  bad_text.insert(bad_at, "-");
  const auto bad_line = std::count(bad_text.begin(), bad_text.begin() + bad_at, '\n') + 1;
  {
    teddy::GzipWriter w(root / "bad.gz", 1);
    w.write(bad_text);
    w.close();
  }
  const std::string where = "f:" + std::to_string(bad_line) + "'";
  CHECK(teddy::index_gzip_members(common::read_file(root / "bad.gz")).size() == 5);
  CHECK_THROWS_WITH_AS(
      teddy::parse_edge_file_bytes(common::read_file(root / "bad.gz"), false, "f", 0),
      doctest::Contains(where.c_str()), common::UsageError);

  // An index that lies (line count) falls back to the whole-stream path: same pairs.
  std::string lying = file;
  lying[members[2].offset + 20] = static_cast<char>(lying[members[2].offset + 20] + 1);
  CHECK(teddy::index_gzip_members(lying).size() == 5);
  CHECK(teddy::parse_edge_file_bytes(lying, false, "f", 0) == expect);
  // Damaged deflate data behind a valid index: an error naming the file, as for any gzip.
  std::string damaged = file;
  for (std::size_t k = 100; k < 140; ++k) {
    damaged[members[3].offset + k] = static_cast<char>(damaged[members[3].offset + k] ^ 0x5a);
  }
  CHECK_THROWS_WITH_AS(teddy::parse_edge_file_bytes(damaged, false, "f.gz", 0),
                       doctest::Contains("f.gz"), common::UsageError);
  // An empty file is one empty member, still valid gzip.
  {
    teddy::GzipWriter w(root / "empty.gz", 6);
    w.close();
  }
  CHECK(teddy::gunzip_buffer(common::read_file(root / "empty.gz"), "e").empty());
  CHECK(teddy::parse_edge_file_bytes(common::read_file(root / "empty.gz"), false, "e", 0).empty());
}

TEST_CASE("a node count beyond this machine's memory is refused before anything is allocated") {
  test::ScratchDir root("io-huge");
  constexpr std::uint64_t kNodes = 4'000'000'000;
  // 8 B of CSR offsets and 8 B of label per node: 64 GB; where the machine has more, the check
  // passes (rightly) and this case cannot be made without allocating it, so it is skipped.
  if (common::physical_memory_bytes() >= 16 * kNodes) {
    MESSAGE("skipped: this machine has room for " << kNodes << " nodes");
    return;
  }
  const std::string msg = load_error(
      make_dir(root, "huge", {{"raw/num-node-list.csv.gz", std::to_string(kNodes) + "\n"}}));
  CAPTURE(msg);
  CHECK(msg.find("node count 4000000000") != std::string::npos);
  CHECK(msg.find("num-node-list.csv.gz") != std::string::npos);
  CHECK(msg.find("more than this machine's") != std::string::npos);
}

TEST_CASE("dataset_info knows OGB's node datasets by directory name, and a fetched marker") {
  test::ScratchDir root("io-info");
  CHECK(teddy::dataset_info(root / "cora").name.empty());
  const auto arxiv = teddy::dataset_info(root / "ogbn_arxiv");
  CHECK(arxiv.name == "ogbn-arxiv");
  CHECK(arxiv.directed);
  CHECK(arxiv.split == "time");
  CHECK(teddy::dataset_info(root / "ogbn_arxiv/").name == "ogbn-arxiv");
  const auto products = teddy::dataset_info(root / "ogbn_products");
  CHECK_FALSE(products.directed);
  CHECK(products.split == "sales_ranking");
  CHECK_THROWS_WITH_AS(teddy::dataset_info(root / "ogbn_proteins"), doctest::Contains("ROC-AUC"),
                       common::UsageError);
  CHECK_THROWS_WITH_AS(teddy::dataset_info(root / "ogbn_mag"), doctest::Contains("heterogeneous"),
                       common::UsageError);
  fs::create_directories(root / "fetched");
  common::write_file_atomic(root / "fetched/.sparsetrain-dataset.json",
                            R"({"name": "ogbn-arxiv", "directed": true, "split": "time"})");
  CHECK(teddy::dataset_info(root / "fetched").directed);
  common::write_file_atomic(root / "fetched/.sparsetrain-dataset.json", "{\"name\": ");
  CHECK_THROWS_WITH_AS(teddy::dataset_info(root / "fetched"), doctest::Contains("dataset marker"),
                       common::UsageError);
}

TEST_CASE("count_missing_reverse counts directed edges whose reverse is absent, loops aside") {
  CHECK(teddy::count_missing_reverse({{0, 1}, {1, 0}, {1, 2}, {3, 3}, {2, 3}, {2, 3}}) == 3);
  CHECK(teddy::count_missing_reverse({}) == 0);
}
