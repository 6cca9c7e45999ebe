// Benchmark of the TEDDY graph pipeline on generated power-law (R-MAT) graphs: edges/s of each
// phase — write (OGB gzip CSV), parse (gzip CSV -> pairs), build CSR, score (TEDDY), select (one
// level, and the 20 paper levels) — plus parse MB/s of gzip input and the peak memory of
// load + score + select in bytes per undirected edge beyond the input. Prints one JSON document
// (commit, hardware, every parameter, raw samples, medians). Never a test; never asserts times.
//
//   teddy_prune_bench [--edges 1000000,10000000] [--repeats 3] [--gzip-level 1] [--dir /tmp]
//                     [--threads N]
#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/run/build_info.h"
#include "common/run/system_info.h"
#include "common/timer.h"
#include "teddy/graph/graph_generator.h"
#include "teddy/graph/graph_io.h"
#include "teddy/graph/gzip_file.h"
#include "teddy/prune/edge_scorer.h"
#include "teddy/prune/edge_selection.h"

namespace st = sparsetrain;
namespace teddy = sparsetrain::teddy;

namespace {

std::uint64_t current_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

double load_average() {
  double l = 0;
  std::ifstream("/proc/loadavg") >> l;
  return l;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so a phase's peak can be measured on its own.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  return static_cast<bool>(out);
}

// CPU seconds of the whole process (all threads): on a shared, noisy machine, edges per CPU-second
// says what the code costs independently of how much of the machine it got.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

constexpr const char* kUsage =
    "usage: teddy_prune_bench [--edges LIST] [--repeats N] [--gzip-level L] [--dir DIR]\n"
    "                         [--threads N]\n"
    "Times write, parse, build CSR, TEDDY score and selection on generated R-MAT graphs and\n"
    "prints one JSON document on stdout (progress on stderr).\n"
    "  --edges LIST      comma-separated undirected edge counts, 1e6 notation allowed\n"
    "                    (default 1000000,10000000; 1e8 needs about 6 GB of RAM)\n"
    "  --repeats N       timed repeats per size, medians reported (default 3)\n"
    "  --gzip-level L    gzip level of the generated edge file, 1..9 (default 1)\n"
    "  --dir DIR         scratch directory for the generated graphs (default /tmp)\n"
    "  --threads N       OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
    "Examples:\n"
    "  teddy_prune_bench --edges 1000000,10000000 --repeats 3 > bench/results/x.json\n"
    "  teddy_prune_bench --edges 1e8 --repeats 1 --threads 2\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::cerr << "teddy_prune_bench: error: " << message << "\n" << kUsage;
  std::exit(2);
}

std::uint64_t parse_count(const std::string& item, const std::string& flag) {
  try {
    std::size_t used = 0;
    const double v = std::stod(item, &used);
    if (used != item.size() || !(v >= 1) || v > 4e9) throw std::invalid_argument(item);
    return static_cast<std::uint64_t>(v);
  } catch (const std::exception&) {
    usage_error(flag + " expects positive counts, got '" + item + "'");
  }
}

std::vector<std::uint64_t> parse_list(const std::string& text) {
  std::vector<std::uint64_t> out;
  std::stringstream s(text);
  for (std::string item; std::getline(s, item, ',');) out.push_back(parse_count(item, "--edges"));
  if (out.empty()) usage_error("--edges expects a comma-separated list of edge counts");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // Every array above 1 MiB gets its own mapping and goes back to the OS when freed, so RSS
  // tracks live memory and the per-repeat peak is not hidden by memory malloc kept from before.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  std::vector<std::uint64_t> sizes = {1000000, 10000000};
  int repeats = 3;
  int gzip_level = 1;
  int threads_flag = 0;
  std::string dir = "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (flag != "--edges" && flag != "--repeats" && flag != "--gzip-level" && flag != "--dir" &&
        flag != "--threads") {
      usage_error("unknown argument '" + flag + "'");
    }
    if (i + 1 >= argc) usage_error(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--edges") {
      sizes = parse_list(value);
    } else if (flag == "--repeats") {
      repeats = static_cast<int>(parse_count(value, flag));
    } else if (flag == "--gzip-level") {
      gzip_level = static_cast<int>(parse_count(value, flag));
      if (gzip_level > 9) usage_error("--gzip-level must be 1..9, got " + value);
    } else if (flag == "--threads") {
      threads_flag = static_cast<int>(parse_count(value, flag));
    } else {
      dir = value;
    }
  }
#ifdef _OPENMP
  if (threads_flag > 0) omp_set_num_threads(threads_flag);
#endif
  const auto& build = st::common::build_info();
  const auto cpu = st::common::cpu_info();
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  nlohmann::json doc = {{"benchmark", "teddy_prune"},
                        {"commit", build.git_commit},
                        {"build_type", build.build_type},
                        {"compiler", build.compiler},
                        {"hardware",
                         {{"cpu", cpu.model},
                          {"logical_cores", cpu.logical_cores},
                          {"memory_bytes", st::common::total_memory_bytes()}}},
                        {"parameters",
                         {{"edges", sizes},
                          {"repeats", repeats},
                          {"gzip_level", gzip_level},
                          {"threads", threads},
                          {"generator", "R-MAT a=0.57 b=c=0.19, nodes = edges/8 -> 2^k"},
                          {"scorer", "teddy"}}},
                        {"results", nlohmann::json::array()}};

  for (std::uint64_t m : sizes) {
    const std::string gdir =
        dir + "/teddy-bench-" + std::to_string(m) + "-" + std::to_string(::getpid());
    nlohmann::json r = {{"edges", m}};
    st::common::Timer t;
    {
      teddy::PowerLawOptions po;
      po.edges = m;
      po.seed = 1;
      teddy::Graph g = teddy::generate_power_law(po);
      r["nodes"] = g.num_nodes;
      r["generate_s"] = t.seconds();
      std::vector<double> write_s;
      for (int k = 0; k < repeats; ++k) {
        teddy::SaveOptions so;
        so.gzip_level = gzip_level;
        so.overwrite = true;
        teddy::SaveReport rep;
        teddy::save_graph(g, gdir, so, &rep);
        write_s.push_back(rep.seconds);
        r["edge_file_bytes"] = std::filesystem::file_size(gdir + "/raw/edge.csv.gz");
      }
      r["samples"]["write_s"] = write_s;
    }
    std::vector<double> inflate_only_s, inflate_zlib_stream_s, parse_only_s, parse_only_cpu_s;
    for (int k = 0; k < repeats; ++k) {
      // The edge reader alone (read + inflate + parse to pairs, as load_graph does it), with its
      // CPU time: on a shared machine, MB per CPU-second says what parsing costs.
      t.reset();
      double c0 = cpu_seconds();
      {
        const std::string path = gdir + "/raw/edge.csv.gz";
        const teddy::TextBuffer file = teddy::read_file_bytes(path);
        const auto pairs = teddy::parse_edge_file_bytes(file.view(), false, path, 0);
        r["edge_file_members"] = teddy::index_gzip_members(file.view()).size();
      }
      parse_only_s.push_back(t.seconds());
      parse_only_cpu_s.push_back(cpu_seconds() - c0);
      // Reading + inflating alone, no number parsing, on one thread: the whole file with
      // libdeflate (read_text_file), and the streaming zlib line reader (used for the small
      // files, and for edges before) beside it.
      t.reset();
      const teddy::TextBuffer text = teddy::read_text_file(gdir + "/raw/edge.csv.gz");
      inflate_only_s.push_back(t.seconds());
      r["edge_text_bytes"] = text.size();
      t.reset();
      teddy::TextFileReader reader(gdir + "/raw/edge.csv.gz");
      std::string_view line;
      while (reader.next_line(line)) {
      }
      inflate_zlib_stream_s.push_back(t.seconds());
    }
    r["samples"]["inflate_only_s"] = inflate_only_s;
    r["samples"]["inflate_zlib_stream_s"] = inflate_zlib_stream_s;
    r["samples"]["parse_only_s"] = parse_only_s;
    r["samples"]["parse_only_cpu_s"] = parse_only_cpu_s;
    std::vector<double> parse_s, build_s, score_s, select1_s, select20_s, bytes_per_edge;
    std::vector<double> load_cpu_s, score_cpu_s, select1_cpu_s, select20_cpu_s;
    for (int k = 0; k < repeats; ++k) {
      const std::uint64_t rss0 = current_rss_bytes();
      const bool reset = reset_peak_rss();
      teddy::LoadReport load;
      double c0 = cpu_seconds();
      teddy::Graph g = teddy::load_graph(gdir, {}, &load);
      load_cpu_s.push_back(cpu_seconds() - c0);
      parse_s.push_back(load.parse_seconds);
      build_s.push_back(load.build_seconds);
      const auto scorer = teddy::make_edge_scorer("teddy", 0);
      t.reset();
      c0 = cpu_seconds();
      teddy::EdgeScores scores = scorer->score(g);
      score_s.push_back(t.seconds());
      score_cpu_s.push_back(cpu_seconds() - c0);
      t.reset();
      c0 = cpu_seconds();
      auto one = teddy::select_pruned_edges(scores, {0.5});
      select1_s.push_back(t.seconds());
      select1_cpu_s.push_back(cpu_seconds() - c0);
      one = {};
      t.reset();
      c0 = cpu_seconds();
      auto lv = teddy::select_pruned_edges(scores, teddy::paper_graph_sparsities());
      select20_s.push_back(t.seconds());
      select20_cpu_s.push_back(cpu_seconds() - c0);
      const std::uint64_t peak = st::common::peak_rss_bytes();
      if (reset)
        bytes_per_edge.push_back(static_cast<double>(peak - rss0) / static_cast<double>(m));
      r["graph_structure_bytes"] = g.structure_bytes();
    }
    std::filesystem::remove_all(gdir);
    r["samples"]["parse_s"] = parse_s;
    r["samples"]["build_csr_s"] = build_s;
    r["samples"]["score_s"] = score_s;
    r["samples"]["select_1_level_s"] = select1_s;
    r["samples"]["select_20_levels_s"] = select20_s;
    r["samples"]["peak_bytes_per_edge"] = bytes_per_edge;
    r["samples"]["load_cpu_s"] = load_cpu_s;
    r["samples"]["score_cpu_s"] = score_cpu_s;
    r["samples"]["select_1_level_cpu_s"] = select1_cpu_s;
    r["samples"]["select_20_levels_cpu_s"] = select20_cpu_s;
    const double md = static_cast<double>(m);
    const double file_mb = r["edge_file_bytes"].get<double>() / 1e6;
    r["median"] = {
        {"write_edges_per_s", md / median(r["samples"]["write_s"].get<std::vector<double>>())},
        {"parse_edges_per_s", md / median(parse_s)},
        {"parse_gzip_mb_per_s", file_mb / median(parse_s)},
        {"parse_text_mb_per_s", r["edge_text_bytes"].get<double>() / 1e6 / median(parse_s)},
        {"inflate_only_gzip_mb_per_s", file_mb / median(inflate_only_s)},
        {"inflate_zlib_stream_gzip_mb_per_s", file_mb / median(inflate_zlib_stream_s)},
        {"parse_only_gzip_mb_per_s", file_mb / median(parse_only_s)},
        {"parse_only_gzip_mb_per_cpu_s", file_mb / median(parse_only_cpu_s)},
        {"build_csr_edges_per_s", md / median(build_s)},
        {"score_edges_per_s", md / median(score_s)},
        {"select_1_level_edges_per_s", md / median(select1_s)},
        {"select_20_levels_edges_per_s", md / median(select20_s)},
        {"score_plus_select_1_edges_per_s", md / (median(score_s) + median(select1_s))},
        {"score_plus_select_20_edges_per_s", md / (median(score_s) + median(select20_s))},
        {"peak_bytes_per_edge", median(bytes_per_edge)},
        {"load_edges_per_cpu_s", md / median(load_cpu_s)},
        {"score_edges_per_cpu_s", md / median(score_cpu_s)},
        {"select_1_level_edges_per_cpu_s", md / median(select1_cpu_s)},
        {"select_20_levels_edges_per_cpu_s", md / median(select20_cpu_s)},
        {"load_avg_1min", load_average()}};
    doc["results"].push_back(r);
    std::cerr << "done " << m << " edges\n";
  }
  std::cout << doc.dump(2) << "\n";
  return 0;
}
