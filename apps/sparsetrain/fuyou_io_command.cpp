// `sparsetrain fuyou bench-io` and `sparsetrain fuyou store verify`: the SSD side of Fuyou.
//  - bench-io measures what the disks behind --ssd deliver through our I/O engine (O_DIRECT,
//    io_uring, --block × --qd): sequential write and read, and read+write at once, per directory
//    and striped across all of them, with CPU seconds per GB moved. The probe is the library's
//    (common/io/ssd_probe.h), the one `fuyou finetune --ssd` measures its SSD rates with; the
//    planner does not read this record. It writes --size bytes per directory into scratch files
//    it removes (twice that with several directories: the striped phases get fresh files).
//  - store verify reads every committed extent of a tensor store and checks its CRC-32C.
#include <iostream>

#include "cli.h"
#include "common/io/io_engine.h"
#include "common/io/ssd_probe.h"
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

nlohmann::json phase_json(const io::ProbePhaseRate& r, const std::vector<const char*>& names) {
  nlohmann::json j = {{"seconds", r.seconds}, {"cpu_s_per_gb", r.cpu_s_per_gb}};
  for (std::size_t s = 0; s < names.size(); ++s)
    j[std::string(names[s]) + "_gbps"] = r.streams[s].gbps;
  return j;
}

void run_bench_io(const BenchIoOptions& options, CommandContext& context) {
  io::IoOptions io_options;
  io_options.block_bytes = common::parse_bytes(options.block);
  io_options.queue_depth = options.qd;
  io_options.backend = io::parse_io_backend(options.backend);
  const io::SsdProbeShape shape =
      io::fit_ssd_probe(common::parse_bytes(options.size), common::parse_bytes(options.stripe),
                        io_options.block_bytes);
  if (shape.stripe_bytes == 0) {
    throw common::UsageError(
        cat("--stripe ", options.stripe, " is smaller than --block ", options.block),
        "pass --stripe a multiple of --block, e.g. 4MiB");
  }
  if (shape.file_bytes == 0) {
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
  m["size_bytes_per_dir"] = shape.file_bytes;
  m["block_bytes"] = io_options.block_bytes;
  m["queue_depth"] = io_options.queue_depth;
  m["stripe_bytes"] = shape.stripe_bytes;
  if (context.global.dry_run) {
    std::cout << "bench-io would write and read "
              << common::format_bytes(static_cast<double>(shape.file_bytes))
              << " per phase in each of " << n << " directories\n";
    return;
  }

  // Fresh files for each target (per directory, then striped): see ssd_probe.h.
  io::SsdProbe probe(*engine, options.dirs, shape, "bench-io");
  auto make_files = [&](const std::string& tag) {
    auto t = context.record.timings().scope("prepare");
    return probe.create_files(tag);
  };
  const std::vector<io::FileId> files = make_files("");
  const std::vector<io::FileId> striped_files =
      n > 1 ? make_files(".striped") : std::vector<io::FileId>{};
  m["o_direct"] = probe.direct();

  // The table goes to stdout unless the run record does (--out -): stdout stays clean for data.
  const bool table = context.global.out != "-";
  std::cout.precision(3);
  std::cout << std::fixed;
  auto run_target = [&](const std::string& label, const std::vector<io::FileId>& target) {
    auto t = context.record.timings().scope(label);
    nlohmann::json j;
    probe.run(target, [&](const std::string& phase, const io::ProbePhaseRate& r) {
      // The streams' names ("write" / "read" / "read", "write") and the table's column.
      std::vector<const char*> names = {"read", "write"};
      const char* column = " read+write";
      if (phase == "write") {
        names = {"write"};
        column = " write     ";
      } else if (phase == "read") {
        names = {"read"};
        column = " read      ";
      }
      j[phase] = phase_json(r, names);
      if (!table) return;
      std::cout << label << column;
      for (std::size_t s = 0; s < names.size(); ++s)
        std::cout << "  " << names[s] << " " << r.streams[s].gbps << " GB/s";
      std::cout << "  (cpu " << r.cpu_s_per_gb << " s/GB)\n";
    });
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
  m["scratch_tensors"] = report.scratch_tensors;
  m["problems"] = report.problems;
  for (const std::string& p : report.problems) common::log_error(p);
  std::cout << "store " << dirs[0] << " version " << report.store_version << ": " << report.tensors
            << " tensors (" << report.scratch_tensors
            << " scratch, written in place: not checked), " << report.extents << " extents, "
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
