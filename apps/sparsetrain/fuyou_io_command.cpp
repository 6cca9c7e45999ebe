// `sparsetrain fuyou bench-io` and `sparsetrain fuyou store verify`: the SSD side of Fuyou.
//  - bench-io measures what the disks behind --ssd deliver through our I/O engine (O_DIRECT,
//    io_uring, --block × --qd): sequential write and read, and read+write at once, per directory
//    and striped across all of them, with CPU seconds per GB moved. Its --out record feeds the
//    planner's cost model. It writes --size bytes per directory into scratch files it removes
//    (twice that with several directories: the striped phases get fresh files of their own).
//  - store verify reads every committed extent of a tensor store and checks its CRC-32C.
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include "cli.h"
#include "common/io/aligned_buffer.h"
#include "common/io/io_engine.h"
#include "common/log.h"
#include "common/timer.h"
#include "common/units.h"
#include "fuyou/store/tensor_store.h"

namespace sparsetrain::cli {

namespace {

namespace io = common::io;
using common::cat;

struct BenchIoOptions {
  std::vector<std::string> dirs;
  std::string size = "8GiB";    // bytes per directory and phase
  std::string block = "1MiB";   // bytes per I/O
  std::string stripe = "4MiB";  // striping unit: the tensor store's default extent
  unsigned qd = 32;
  std::string backend = "auto";
};

double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec * 1e-6; };
  return sec(usage.ru_utime) + sec(usage.ru_stime);
}

// One stream of a phase: `bytes` moved by `op` over `files` (round-robin by block when striped).
struct Stream {
  io::IoOp op;
  std::vector<io::FileId> files;
  std::uint64_t offset;             // in each file
  std::uint64_t bytes;              // in total
  std::uint64_t stripe_blocks = 1;  // consecutive blocks per file before moving to the next
};

struct StreamResult {
  double seconds = 0;
  double gbps = 0;  // 1e9 bytes per second
};

struct PhaseResult {
  std::vector<StreamResult> streams;
  double seconds = 0;
  double cpu_s_per_gb = 0;
};

// Runs all streams at once; each is one batch of block-sized requests whose buffers cycle through
// that stream's own qd × block pinned buffer (contents are not checked: this is a benchmark).
PhaseResult run_phase(io::IoEngine& engine, const std::vector<Stream>& streams,
                      std::vector<io::AlignedBuffer>& buffers) {
  const std::size_t block = engine.options().block_bytes;
  const std::size_t slots = engine.options().queue_depth;
  std::vector<std::vector<io::IoRequest>> batches(streams.size());
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < streams.size(); ++s) {
    const Stream& st = streams[s];
    const std::uint64_t blocks = st.bytes / block;
    const std::size_t n = st.files.size();
    const std::uint64_t u = st.stripe_blocks;
    for (std::uint64_t i = 0; i < blocks; ++i) {
      const std::uint64_t unit = i / u;  // stripe unit i falls in; unit k lives in file k % n
      batches[s].push_back({st.op, st.files[unit % n], st.offset + ((unit / n) * u + i % u) * block,
                            buffers[s].data() + (i % slots) * block, block});
    }
    total += blocks * block;
  }
  const double cpu0 = cpu_seconds();
  common::Timer timer;
  std::vector<std::shared_future<void>> futures;
  for (auto& b : batches) futures.push_back(engine.submit(std::move(b)).share());
  PhaseResult result;
  result.streams.resize(streams.size());
  std::vector<std::thread> waiters;
  for (std::size_t s = 0; s < streams.size(); ++s) {
    waiters.emplace_back([&, s] {
      try {
        futures[s].wait();
      } catch (...) {
      }
      result.streams[s].seconds = timer.seconds();
    });
  }
  for (auto& w : waiters) w.join();
  for (auto& f : futures) f.get();  // rethrows an I/O error
  result.seconds = timer.seconds();
  result.cpu_s_per_gb = (cpu_seconds() - cpu0) / (static_cast<double>(total) / 1e9);
  for (std::size_t s = 0; s < streams.size(); ++s) {
    result.streams[s].gbps =
        static_cast<double>(streams[s].bytes / block * block) / 1e9 / result.streams[s].seconds;
  }
  return result;
}

// Removes the scratch files however the benchmark ends.
struct ScratchFiles {
  std::vector<std::string> paths;
  ~ScratchFiles() {
    for (const std::string& p : paths) ::unlink(p.c_str());
  }
};

void run_bench_io(const BenchIoOptions& options, CommandContext& context) {
  io::IoOptions io_options;
  io_options.block_bytes = common::parse_bytes(options.block);
  io_options.queue_depth = options.qd;
  io_options.backend = io::parse_io_backend(options.backend);
  const std::uint64_t block = io_options.block_bytes;
  std::uint64_t stripe = common::parse_bytes(options.stripe) / block * block;
  if (stripe == 0) {
    throw common::UsageError(
        cat("--stripe ", options.stripe, " is smaller than --block ", options.block),
        "pass --stripe a multiple of --block, e.g. 4MiB");
  }
  // Each file holds whole stripe units, and the read+write phase splits it into two halves of
  // whole units: size = 2 * half, half a multiple of the unit (shrunk for small sizes).
  std::uint64_t half = common::parse_bytes(options.size) / 2 / block * block;
  stripe = std::max<std::uint64_t>(block, std::min(stripe, half));
  half = half / stripe * stripe;
  const std::uint64_t size = 2 * half;
  if (size == 0) {
    throw common::UsageError(
        cat("--size ", options.size, " is smaller than two blocks (", options.block, ")"),
        "pass --size of at least --block, e.g. --size 1GiB");
  }
  if (options.dirs.empty())
    throw common::UsageError("no --ssd directories given", "pass --ssd DIR[,DIR...]");
  auto engine = io::IoEngine::create(io_options, options.dirs);
  const std::size_t n = options.dirs.size();

  nlohmann::json& m = context.record.metrics();
  m["backend"] = io::io_backend_name(engine->backend());
  m["size_bytes_per_dir"] = size;
  m["block_bytes"] = io_options.block_bytes;
  m["queue_depth"] = io_options.queue_depth;
  m["stripe_bytes"] = stripe;
  if (context.global.dry_run) {
    std::cout << "bench-io would write and read " << common::format_bytes(static_cast<double>(size))
              << " per phase in each of " << n << " directories\n";
    return;
  }

  ScratchFiles scratch;
  bool direct = true;
  // Fresh, preallocated files for each target (per directory, then striped), so every write phase
  // fills unwritten extents: overwriting blocks a previous phase wrote is cheaper on ext4 and would
  // flatter whichever target came second.
  auto make_files = [&](const std::string& tag) {
    auto t = context.record.timings().scope("prepare");
    std::vector<io::FileId> made;
    for (std::size_t d = 0; d < n; ++d) {
      const std::string path =
          options.dirs[d] + "/.sparsetrain-bench-io." + std::to_string(::getpid()) + tag + ".dat";
      made.push_back(engine->open_file(path, io::OpenMode::kCreate));
      scratch.paths.push_back(path);
      direct = direct && engine->is_direct(made.back());
      // Room for the whole size in each file (concurrent phases use two halves).
      engine->allocate(made.back(), 0, size);
    }
    return made;
  };
  const std::vector<io::FileId> files = make_files("");
  const std::vector<io::FileId> striped_files =
      n > 1 ? make_files(".striped") : std::vector<io::FileId>{};
  m["o_direct"] = direct;
  std::vector<io::AlignedBuffer> buffers;
  for (int s = 0; s < 2; ++s) {
    buffers.emplace_back(io_options.block_bytes * io_options.queue_depth);
    for (std::size_t i = 0; i < buffers.back().size(); i += 8) {
      const std::uint64_t word = (i + 1) * 0x9E3779B97F4A7C15ull;  // incompressible-ish, not zeros
      std::memcpy(buffers.back().data() + i, &word, 8);
    }
    engine->register_buffer(buffers.back().data(), buffers.back().size());
  }

  auto phase_json = [](const PhaseResult& r, const std::vector<const char*>& names) {
    nlohmann::json j = {{"seconds", r.seconds}, {"cpu_s_per_gb", r.cpu_s_per_gb}};
    for (std::size_t s = 0; s < names.size(); ++s)
      j[std::string(names[s]) + "_gbps"] = r.streams[s].gbps;
    return j;
  };
  // The table goes to stdout unless the run record does (--out -): stdout stays clean for data.
  const bool table = context.global.out != "-";
  auto report = [table](const std::string& label, const PhaseResult& r,
                        const std::vector<const char*>& names) {
    if (!table) return;
    std::cout << label;
    for (std::size_t s = 0; s < names.size(); ++s)
      std::cout << "  " << names[s] << " " << r.streams[s].gbps << " GB/s";
    std::cout << "  (cpu " << r.cpu_s_per_gb << " s/GB)\n";
  };
  std::cout.precision(3);
  std::cout << std::fixed;

  // Order per target: write, read (what was just written), then half read + half write at once.
  auto run_target = [&](const std::string& label, const std::vector<io::FileId>& target) {
    auto t = context.record.timings().scope(label);
    const std::uint64_t total = size * target.size();
    nlohmann::json j;
    const std::uint64_t u = stripe / block;
    PhaseResult w = run_phase(*engine, {{io::IoOp::kWrite, target, 0, total, u}}, buffers);
    report(label + " write     ", w, {"write"});
    j["write"] = phase_json(w, {"write"});
    PhaseResult r = run_phase(*engine, {{io::IoOp::kRead, target, 0, total, u}}, buffers);
    report(label + " read      ", r, {"read"});
    j["read"] = phase_json(r, {"read"});
    PhaseResult rw = run_phase(*engine,
                               {{io::IoOp::kRead, target, 0, half * target.size(), u},
                                {io::IoOp::kWrite, target, half, half * target.size(), u}},
                               buffers);
    report(label + " read+write", rw, {"read", "write"});
    j["read_write"] = phase_json(rw, {"read", "write"});
    return j;
  };
  nlohmann::json per_dir = nlohmann::json::array();
  for (std::size_t d = 0; d < n; ++d) {
    nlohmann::json j = run_target("dir " + std::to_string(d), {files[d]});
    j["dir"] = options.dirs[d];
    per_dir.push_back(std::move(j));
  }
  m["per_dir"] = std::move(per_dir);
  if (n > 1) m["striped"] = run_target("striped", striped_files);
  const io::IoStats stats = engine->stats();
  m["requeued"] = stats.requeued;
  m["fixed_buffer_blocks"] = stats.fixed_buffer_blocks;
}

void run_store_verify(const std::vector<std::string>& dirs, CommandContext& context) {
  auto store = fuyou::TensorStore::open(dirs);
  fuyou::VerifyReport report;
  {
    auto t = context.record.timings().scope("verify");
    report = store->verify();
  }
  nlohmann::json& m = context.record.metrics();
  m["store_version"] = report.store_version;
  m["tensors"] = report.tensors;
  m["extents"] = report.extents;
  m["bytes"] = report.bytes;
  m["problems"] = report.problems;
  for (const std::string& p : report.problems) common::log_error(p);
  std::cout << "store " << dirs[0] << " version " << report.store_version << ": " << report.tensors
            << " tensors, " << report.extents << " extents, "
            << common::format_bytes(static_cast<double>(report.bytes)) << " checked, "
            << report.problems.size() << " bad\n";
  if (!report.ok()) {
    throw common::RunError(
        cat("tensor store in '", dirs[0], "' failed verification: ", report.problems.size(),
            " extent(s) with bad checksums (listed above)"),
        "the data on disk is corrupt; restore the store from a checkpoint");
  }
}

}  // namespace

void add_fuyou_io_commands(CLI::App& fuyou) {
  auto options = std::make_shared<BenchIoOptions>();
  CLI::App* bench = fuyou.add_subcommand(
      "bench-io", "Measure SSD bandwidth through the I/O engine, per directory and striped");
  bench->add_option("--ssd", options->dirs, "Directories to test, comma-separated (one file each)")
      ->required()
      ->delimiter(',')
      ->check(CLI::ExistingDirectory);
  bench->add_option("--size", options->size, "Bytes per directory and phase, e.g. 8GiB")
      ->capture_default_str();
  bench->add_option("--block", options->block, "Bytes per I/O (multiple of 4KiB)")
      ->capture_default_str();
  bench
      ->add_option("--stripe", options->stripe,
                   "Striping unit across directories (the store's extent)")
      ->capture_default_str();
  bench->add_option("--qd", options->qd, "I/Os in flight")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  bench->add_option("--backend", options->backend, "I/O backend")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "uring", "threads"}));
  bench->footer(
      "Examples:\n"
      "  sparsetrain fuyou bench-io --ssd /mnt/nvme0 --size 4GiB\n"
      "  sparsetrain fuyou bench-io --ssd /mnt/a,/mnt/b --size 8GiB --block 1MiB --qd 32 --out "
      "profile.json");
  set_command_runner(bench,
                     [options](CommandContext& context) { run_bench_io(*options, context); });

  CLI::App* store = fuyou.add_subcommand("store", "Inspect an SSD tensor store");
  auto dirs = std::make_shared<std::vector<std::string>>();
  CLI::App* verify = store->add_subcommand("verify", "Check every committed extent's CRC-32C");
  verify->add_option("dirs", *dirs, "The store's directories, in creation order")
      ->required()
      ->check(CLI::ExistingDirectory);
  verify->footer(
      "Examples:\n"
      "  sparsetrain fuyou store verify /mnt/nvme0/store\n"
      "  sparsetrain fuyou store verify /mnt/a/store /mnt/b/store --out verify.json");
  set_command_runner(verify, [dirs](CommandContext& context) { run_store_verify(*dirs, context); });
}

}  // namespace sparsetrain::cli
