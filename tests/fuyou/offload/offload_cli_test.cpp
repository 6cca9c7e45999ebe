// `sparsetrain fuyou finetune --ssd …` from the command line: --dry-run prints the plan, runs that
// cannot fit are refused with exit 2 before anything is written, an offloaded run records the same
// losses as the in-memory run, and a run killed (SIGKILL) mid-training resumes with --resume to the
// uninterrupted run's exported weights, byte for byte.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "cli/cli_support.h"

using sparsetrain::test::run_sparsetrain;
namespace fs = std::filesystem;
using sparsetrain::test::read_bytes;
using sparsetrain::test::read_json;
using sparsetrain::test::start_sparsetrain;
using sparsetrain::test::wait_for_store_version;
using sparsetrain::test::operator+;

namespace {

// Small models on a shared machine: one intra-op thread keeps the runs fast (see fuyou_cli_test).
const bool kOneThread = (::setenv("OMP_NUM_THREADS", "1", /*overwrite=*/0), true);

fs::path scratch(const std::string& name) {
  fs::path d =
      fs::temp_directory_path() / ("st-offload-cli-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d / "a");
  fs::create_directories(d / "b");
  return d;
}

std::string ssd_of(const fs::path& d) { return (d / "a").string() + "," + (d / "b").string(); }

std::vector<std::string> tiny_args(const std::string& steps) {
  return {"fuyou",          "finetune", "--model", "tiny", "--steps",      steps,
          "--micro-batch",  "4",        "--seq",   "32",   "--eval-every", "0",
          "--eval-batches", "1",        "--seed",  "5",    "--progress",   "never",
          "--device",       "cpu"};
}

}  // namespace

TEST_CASE("--dry-run prints the placement and the bound, and writes no store") {
  const fs::path d = scratch("dry");
  auto r = run_sparsetrain(
      tiny_args("5") + std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem", "1200KiB",
                                                "--dry-run", "--out", (d / "plan.json").string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("in the SSD store, 2 staging slots") != std::string::npos);
  CHECK(r.out.find("bound by") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "a" / "sparsetrain-store.json"));
  const auto record = read_json(d / "plan.json");
  CHECK(record["metrics"]["offload"]["states"] == "store");
  CHECK(record["metrics"]["offload"]["per_iteration"]["ssd_read_bytes"] == 1511424);
}

TEST_CASE("a CPU budget too small for two staging slots is refused with exit 2") {
  const fs::path d = scratch("small");
  auto r = run_sparsetrain(tiny_args("5") +
                           std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem", "64KiB"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--cpu-mem does not fit") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "a" / "sparsetrain-store.json"));
  // Refused before the rate probes: GPT-3 175B's probe block alone would be 7 GiB of fp32 weights
  // and minutes of work on this machine (the CLI tests' time limit fails the test then).
  r = run_sparsetrain({"fuyou", "finetune", "--model", "gpt3-175b", "--device", "cpu", "--seq",
                       "1024", "--micro-batch", "1", "--ssd", ssd_of(d), "--cpu-mem", "64MiB",
                       "--progress", "never"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--cpu-mem does not fit: needs 384 MiB") != std::string::npos);
  r = run_sparsetrain(tiny_args("5") + std::vector<std::string>{"--ssd", ssd_of(d)});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--cpu-mem") != std::string::npos);
  r = run_sparsetrain(tiny_args("5") + std::vector<std::string>{"--resume"});
  CHECK(r.exit_code == 2);
}

TEST_CASE("--state-piece sets the states' piece size, rounded to the store's extent rule") {
  const fs::path d = scratch("piece");
  // 4 MiB extents: pieces are whole multiples of 1 Mi floats (4 MiB of each of master, m, v).
  auto r = run_sparsetrain(tiny_args("5") +
                           std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem", "1200KiB",
                                                    "--state-piece", "6MiB", "--dry-run", "--out",
                                                    (d / "plan.json").string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // The pieces are 1 Mi floats; the largest unit (a block, 50,176 floats = 196 KiB) is one piece.
  CHECK(r.out.find("a piece of at most 196 KiB of each") != std::string::npos);
  CHECK(read_json(d / "plan.json")["metrics"]["offload"]["state_piece_floats"] == 1 << 20);
  r = run_sparsetrain(tiny_args("5") + std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem",
                                                                "1200KiB", "--state-piece",
                                                                "1KiB"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--state-piece 1KiB is below 4 KiB") != std::string::npos);
  r = run_sparsetrain(tiny_args("5") + std::vector<std::string>{"--state-piece", "64MiB"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("apply to offloaded runs only") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "a" / "sparsetrain-store.json"));
}

TEST_CASE("--device cuda --dry-run plans a CUDA run even where no GPU is visible") {
  const fs::path d = scratch("cuda-plan");
  std::vector<std::string> args = {
      "fuyou",     "finetune", "--model", "tiny", "--device",      "cuda", "--ssd",      ssd_of(d),
      "--cpu-mem", "2MiB",     "--seq",   "32",   "--micro-batch", "4",    "--progress", "never"};
  auto r = run_sparsetrain(
      args + std::vector<std::string>{"--dry-run", "--out", (d / "plan.json").string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("2 pinned fp32 gradient slots") != std::string::npos);  // the CUDA tier's plan
  CHECK(r.out.find("bound by") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "a" / "sparsetrain-store.json"));
  if (r.err.find("no CUDA device here") != std::string::npos) {  // CI: no GPU
    const auto record = read_json(d / "plan.json");
    CHECK(record["run"]["offload_bound"]["rates"]["source"].get<std::string>().find("H200") !=
          std::string::npos);
    // Training itself still needs the GPU.
    r = run_sparsetrain(args + std::vector<std::string>{"--steps", "1"});
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("no CUDA device is visible") != std::string::npos);
    CHECK_FALSE(fs::exists(d / "a" / "sparsetrain-store.json"));
  }
}

TEST_CASE("an offloaded run records the in-memory run's losses and reports bytes and the bound") {
  const fs::path d = scratch("same");
  auto mem = run_sparsetrain(tiny_args("6") +
                             std::vector<std::string>{"--out", (d / "mem.json").string()});
  REQUIRE(mem.exit_code == 0);
  auto off = run_sparsetrain(tiny_args("6") +
                             std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem", "1200KiB",
                                                      "--out", (d / "off.json").string()});
  INFO(off.err);
  REQUIRE(off.exit_code == 0);
  const auto a = read_json(d / "mem.json");
  const auto b = read_json(d / "off.json");
  CHECK(a["metrics"]["losses"] == b["metrics"]["losses"]);
  CHECK(a["metrics"]["final_val_loss"] == b["metrics"]["final_val_loss"]);
  const auto& measured = b["run"]["offload_measured"];
  CHECK(measured["ssd_read_bytes"] == 6 * 1511424);
  CHECK(measured["ssd_write_bytes"] == 6 * 1511424);
  CHECK(measured["measured_over_bound"].get<double>() > 0);
}

namespace {

// Runs `base` + --ssd uninterrupted (exporting its weights), then again killed (SIGKILL) once
// `kill_after` steps are committed and a random 0 … `jitter_ms` later (mid-step: forward, backward
// or the updates), resumes it with --resume and checks the export is the uninterrupted one, byte
// for byte. Returns the resumed run's record.
nlohmann::json kill_and_resume(const fs::path& d, const std::vector<std::string>& base,
                               int kill_after, int jitter_ms) {
  fs::create_directories(d / "whole" / "a");
  auto whole = run_sparsetrain(
      base + std::vector<std::string>{"--ssd", (d / "whole" / "a").string(), "--export",
                                      (d / "whole.safetensors").string()});
  INFO(whole.err);
  REQUIRE(whole.exit_code == 0);

  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  const int delay_ms = jitter_ms > 0 ? static_cast<int>(rng() % jitter_ms) : 0;
  MESSAGE("killing " << delay_ms << " ms after step " << kill_after << " is committed");
  std::vector<std::string> args = base + std::vector<std::string>{"--ssd", ssd_of(d)};
  const pid_t pid = start_sparsetrain(args);
  // Store version 1 = the initial commit; step k commits version k + 1.
  const bool killed = wait_for_store_version(d / "a" / "sparsetrain-store.json", kill_after + 1);
  if (killed) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(killed);
  REQUIRE(WIFSIGNALED(status));

  auto resumed = run_sparsetrain(
      args + std::vector<std::string>{"--resume", "--export", (d / "resumed.safetensors").string(),
                                      "--out", (d / "resumed.json").string()});
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK(read_bytes(d / "resumed.safetensors") == read_bytes(d / "whole.safetensors"));
  return read_json(d / "resumed.json");
}

}  // namespace

TEST_CASE("a run killed at a random step resumes to the uninterrupted run's weights") {
  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  const int kill_after = 2 + static_cast<int>(rng() % 12);  // committed steps before the kill
  const auto record = kill_and_resume(
      scratch("kill"),
      tiny_args("16") + std::vector<std::string>{"--grad-clip", "0", "--cpu-mem", "1200KiB"},
      kill_after, 0);
  CHECK(record["metrics"]["first_step"].get<int>() >= kill_after + 1);
}

TEST_CASE("a run in place (--store-slots 1) killed mid-step resumes to the same weights") {
  // Blocks of 1.23 M parameters in state pieces of 1 Mi floats: two pieces each, so the ring of
  // each block moves piece by piece; killed up to a step's time after a commit, mid-update or not.
  const std::vector<std::string> base = {
      "fuyou",          "finetune", "--model",       "custom:L=2,C=320,H=5,V=256,T=64",
      "--steps",        "8",        "--micro-batch", "2",
      "--seq",          "32",       "--eval-every",  "0",
      "--eval-batches", "1",        "--seed",        "5",
      "--progress",     "never",    "--device",      "cpu",
      "--cpu-mem",      "64MiB",    "--state-piece", "4MiB",
      "--store-slots",  "1"};
  const fs::path d = scratch("kill-in-place");
  const auto record = kill_and_resume(d, base, 3, 150);
  CHECK(record["metrics"]["offload"]["store_slots"] == 1);
  CHECK(record["metrics"]["first_step"].get<int>() >= 4);
}

TEST_CASE("--assume-ssd plans GPT-3 175B on a 24 GiB GPU before the disks exist") {
  const fs::path d = scratch("assume");
  const std::string json = (d / "plan.json").string();
  const std::vector<std::string> args = {
      "fuyou",      "finetune",  "--model",   "gpt3-175b", "--device", "cuda",          "--gpu-mem",
      "24GiB",      "--cpu-mem", "64GiB",     "--seq",     "2048",     "--micro-batch", "1",
      "--progress", "never",     "--dry-run", "--out",     json};
  auto r = run_sparsetrain(
      args + std::vector<std::string>{"--assume-ssd", "12x4TB@2GB/s", "--assume-pcie", "25GB/s"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("offloaded to 12 assumed SSDs") != std::string::npos);
  CHECK(r.out.find("streamed in pieces (4 a block") != std::string::npos);
  CHECK(r.out.find("largest micro-batch that fits these budgets: ") != std::string::npos);
  auto record = read_json(json);
  const auto& offload = record["metrics"]["offload"];
  CHECK(offload["granularity"] == "piece");
  CHECK(offload["store_slots"] == 2);
  CHECK(offload["largest_micro_batch"].get<int>() >= 1);
  const auto& rates = record["run"]["offload_bound"]["rates"];
  CHECK(rates["ssd_read_bytes_per_s"].get<double>() == doctest::Approx(24e9));
  CHECK(rates["pcie_h2d_bytes_per_s"].get<double>() == doctest::Approx(25e9));
  // One disk of 4 TB cannot hold two copies of 175B's states (4.2 TB): one slot, in place.
  r = run_sparsetrain(args + std::vector<std::string>{"--assume-ssd", "1x4TB@2GB/s"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  record = read_json(json);
  CHECK(record["metrics"]["offload"]["store_slots"] == 1);
  CHECK(record["metrics"]["offload"]["ssd_bytes_per_param"].get<double>() < 16.5);
  // Whole blocks asked for: the compute tier cannot hold two of them with their gradients.
  r = run_sparsetrain(
      args + std::vector<std::string>{"--assume-ssd", "12x4TB@2GB/s", "--stream", "block"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--gpu-mem (compute tier) does not fit") != std::string::npos);
  r = run_sparsetrain(args + std::vector<std::string>{"--assume-ssd", "12x4TB"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("is not COUNTxSIZE@READ[,WRITE]") != std::string::npos);
  r = run_sparsetrain(args + std::vector<std::string>{"--assume-ssd", "2x4TB@fast"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("is not a rate") != std::string::npos);
}

TEST_CASE("assumed hardware needs --dry-run; pieces and one store slot train on the CPU tier") {
  const fs::path d = scratch("unbuilt");
  auto r =
      run_sparsetrain(tiny_args("5") +
                      std::vector<std::string>{"--cpu-mem", "8MiB", "--assume-ssd", "1x1TB@1GB/s"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("need --dry-run") != std::string::npos);
  // One store slot per extent (updates in place): the in-memory run's losses too.
  r = run_sparsetrain(tiny_args("5") + std::vector<std::string>{"--ssd", (d / "a").string(),
                                                                "--cpu-mem", "8MiB",
                                                                "--store-slots", "1", "--out",
                                                                (d / "in-place.json").string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  fs::create_directories(d / "c");
  fs::create_directories(d / "d");
  const std::string other_ssd = (d / "c").string() + "," + (d / "d").string();
  // Streaming in pieces: the in-memory run's losses.
  r = run_sparsetrain(tiny_args("5") + std::vector<std::string>{"--ssd", other_ssd, "--cpu-mem",
                                                                "8MiB", "--gpu-mem", "2MiB",
                                                                "--stream", "piece", "--out",
                                                                (d / "pieces.json").string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  r = run_sparsetrain(tiny_args("5") +
                      std::vector<std::string>{"--out", (d / "memory.json").string()});
  REQUIRE(r.exit_code == 0);
  const auto pieces = read_json(d / "pieces.json");
  CHECK(pieces["metrics"]["offload"]["granularity"] == "piece");
  CHECK(pieces["metrics"]["losses"] == read_json(d / "memory.json")["metrics"]["losses"]);
  const auto one_slot = read_json(d / "in-place.json");
  CHECK(one_slot["metrics"]["offload"]["store_slots"] == 1);
  CHECK(one_slot["metrics"]["losses"] == read_json(d / "memory.json")["metrics"]["losses"]);
}

TEST_CASE("a state piece or a block piece larger than its budget is refused with the sizes") {
  const fs::path d = scratch("piece-budget");
  // GPT-3 1.3B's largest unit (the embeddings, 107 M floats) in pieces of 256 Mi floats: two
  // staging slots of 12 B a float do not fit 512 MiB. Refused before the rate probes.
  auto r = run_sparsetrain({"fuyou", "finetune", "--model", "gpt3-1.3b", "--device", "cpu", "--seq",
                            "128", "--micro-batch", "1", "--ssd", ssd_of(d), "--cpu-mem", "512MiB",
                            "--state-piece", "1GiB", "--progress", "never"});
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--cpu-mem does not fit: needs 2.39 GiB") != std::string::npos);
  CHECK(r.err.find("2 staging slots of one state piece's master + m + v") != std::string::npos);
  // Blocks in pieces need two slots of the largest piece: 1 MiB holds less.
  r = run_sparsetrain(tiny_args("5") + std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem",
                                                                "8MiB", "--gpu-mem", "1MiB",
                                                                "--stream", "piece"});
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--gpu-mem (compute tier) does not fit") != std::string::npos);
  CHECK(r.err.find("2 streamed block-piece slots 131 KiB") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "a" / "sparsetrain-store.json"));
}

TEST_CASE("kept activations in the store, killed mid-run: the resumed run ends at the same bytes") {
  std::mt19937 rng(static_cast<unsigned>(::getpid()) + 1);
  const int kill_after = 2 + static_cast<int>(rng() % 8);
  const auto record = kill_and_resume(
      scratch("kill-activations"),
      tiny_args("12") + std::vector<std::string>{"--accum", "2", "--cpu-mem", "1200KiB",
                                                 "--activations", "0:all;1:attn,fc",
                                                 "--activations-in", "store"},
      kill_after, 30);
  const auto& blocks = record["metrics"]["offload"]["activations"]["blocks"];
  CHECK(blocks[0]["kept"] == "ln1,qkv,attn,resid,ln2,fc,gelu");
  CHECK(blocks[1]["kept"] == "attn,fc");
  CHECK(blocks[1]["tier"] == "store");
  CHECK(record["run"]["offload_measured"]["activation_bytes_written"].get<double>() > 0);
}

TEST_CASE(
    "--dry-run says what auto keeps and why; bad --activations are refused, nothing written") {
  const fs::path d = scratch("activations");
  auto r =
      run_sparsetrain(tiny_args("5") + std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem",
                                                                "1200KiB", "--dry-run"});
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("activations   auto: kept") != std::string::npos);
  CHECK(r.out.find("cost model: recompute predicts") != std::string::npos);
  CHECK(r.out.find("recomputed)") != std::string::npos);
  struct Bad {
    std::vector<std::string> args;
    const char* error;
  };
  const Bad bad[] = {
      {{"--activations", "attn,mlp"}, "unknown block activation 'mlp'"},
      {{"--activations", "0:attn;2:fc"}, "block 2 does not exist: the model has 2 blocks"},
      // 2,525,000 B: the recompute plan's 2,475,264 B and 49 KB, not fc's 128 KiB.
      {{"--activations", "fc", "--activations-in", "compute", "--gpu-mem", "2525000"},
       "--gpu-mem (compute tier)"},
      {{"--activations", "keep-all", "--activations-in", "cpu"}, "--cpu-mem for block 1's kept"},
      {{"--activations-in", "ssd"}, "--activations-in"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.error);
    r = run_sparsetrain(tiny_args("5") +
                        std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem", "1200KiB"} +
                        b.args);
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(b.error) != std::string::npos);
    CHECK(r.err.find("hint:") != std::string::npos);
    CHECK_FALSE(fs::exists(d / "a" / "sparsetrain-store.json"));
  }
  // In memory (no --ssd) there is no policy to choose: refused, naming the flags.
  r = run_sparsetrain(tiny_args("5") + std::vector<std::string>{"--activations", "keep-all"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--activations") != std::string::npos);
}

TEST_CASE("SIGTERM mid-run exits 130 and its record holds the metrics of the steps done") {
  const fs::path d = scratch("sigterm");
  const fs::path record = d / "record.json";
  const pid_t pid = start_sparsetrain(
      tiny_args("1000000") + std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem", "1200KiB",
                                                      "--out", record.string()});
  REQUIRE(wait_for_store_version(d / "a" / "sparsetrain-store.json", 4));  // step 3 committed
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  const nlohmann::json r = read_json(record);
  CHECK(r["status"] == "interrupted");
  const auto& losses = r["metrics"]["losses"];
  REQUIRE(losses.is_array());
  CHECK(losses.size() >= 3);
  CHECK(r["metrics"]["last_step"].get<std::size_t>() == losses.size());
  CHECK(r["metrics"]["final_loss"] == losses.back());
}

TEST_CASE("a second process on the same store is refused with exit 2 naming the first one's pid") {
  const fs::path d = scratch("two-writers");
  const std::vector<std::string> args =
      tiny_args("1000000") + std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem", "1200KiB"};
  const pid_t first = start_sparsetrain(args);
  REQUIRE(wait_for_store_version(d / "a" / "sparsetrain-store.json", 2));
  const auto fresh = run_sparsetrain(args);
  const auto resumed = run_sparsetrain(args + std::vector<std::string>{"--resume"});
  ::kill(first, SIGKILL);
  int status = 0;
  ::waitpid(first, &status, 0);
  for (const auto& second : {fresh, resumed}) {
    INFO(second.err);
    CHECK(second.exit_code == 2);
    CHECK(second.err.find("is in use by process " + std::to_string(first)) != std::string::npos);
  }
  // Killed, the first run holds the lock no more: the store opens.
  const auto after =
      run_sparsetrain({"fuyou", "store", "verify", (d / "a").string(), (d / "b").string()});
  INFO(after.err);
  CHECK(after.exit_code == 0);
}

TEST_CASE("SPARSETRAIN_IO_FAULT fails a run's n-th write: one line, exit 1; --resume finishes it") {
  const fs::path d = scratch("io-fault");
  const std::vector<std::string> args =
      tiny_args("6") + std::vector<std::string>{"--ssd", ssd_of(d), "--cpu-mem", "1200KiB"};
  ::setenv("SPARSETRAIN_IO_FAULT", "write:30:eio", 1);
  const auto failed = run_sparsetrain(args);
  ::setenv("SPARSETRAIN_IO_FAULT", "write:1:bogus", 1);
  const auto bad_spec = run_sparsetrain(args);
  ::unsetenv("SPARSETRAIN_IO_FAULT");
  INFO(failed.err);
  CHECK(failed.exit_code == 1);
  CHECK(failed.err.find("error: cannot write '" + d.string()) != std::string::npos);
  CHECK(failed.err.find(std::strerror(EIO)) != std::string::npos);
  CHECK(failed.err.find("injected fault") != std::string::npos);
  CHECK(bad_spec.exit_code == 2);
  CHECK(bad_spec.err.find("OP:N:KIND") != std::string::npos);
  const auto resumed = run_sparsetrain(args + std::vector<std::string>{"--resume"});
  INFO(resumed.err);
  CHECK(resumed.exit_code == 0);
}
