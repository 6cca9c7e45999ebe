// `fuyou finetune` across ranks, through the real binary on loopback Gloo: R ranks of micro-batch
// B equal one process with --accum R (bit for bit for R = 2, in memory and offloaded with the
// states in the store and clipping; within 1e-6 for R = 3), per-rank stores and records, a rank
// killed mid-step stopping the others and --resume continuing bit for bit, and the bad inputs of a
// launch (mismatched flags, an unreachable master, unknown backends, a changed world size).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_support.h"

using sparsetrain::test::read_bytes;
using sparsetrain::test::read_json;
using sparsetrain::test::wait_for_store_version;
using sparsetrain::test::wait_process;
using sparsetrain::test::operator+;
using sparsetrain::test::run_sparsetrain;
namespace fs = std::filesystem;

namespace {

const bool kOneThread = (::setenv("OMP_NUM_THREADS", "1", /*overwrite=*/0), true);

fs::path scratch(const std::string& name) {
  const fs::path d = sparsetrain::test::scratch_dir("st-fuyou-dist") / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A tiny seeded run; the micro-batch is per rank.
std::vector<std::string> tiny(const std::string& steps) {
  return {"fuyou",          "finetune", "--model", "tiny", "--steps",      steps,
          "--micro-batch",  "2",        "--seq",   "32",   "--eval-every", "0",
          "--eval-batches", "1",        "--seed",  "3",    "--progress",   "never"};
}

// States in the store (CPU budget of two staging slots), global-norm clipping on.
std::vector<std::string> offloaded(const fs::path& ssd) {
  return {"--ssd", ssd.string(), "--cpu-mem", "1300KiB", "--grad-clip", "0.5"};
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Starts rank `rank` of `world` as torchrun would (its environment), stderr to `err`.
pid_t spawn_rank(const std::vector<std::string>& args, int rank, int world, int port,
                 const fs::path& err) {
  return sparsetrain::test::start_sparsetrain(args,
                                              {{"RANK", std::to_string(rank)},
                                               {"WORLD_SIZE", std::to_string(world)},
                                               {"LOCAL_RANK", std::to_string(rank)},
                                               {"MASTER_ADDR", "127.0.0.1"},
                                               {"MASTER_PORT", std::to_string(port)}},
                                              err.string());
}

}  // namespace

TEST_CASE("two ranks in memory equal one process with --accum 2, bit for bit") {
  const fs::path d = scratch("memory");
  auto one =
      run_sparsetrain(tiny("3") + std::vector<std::string>{"--accum", "2", "--export",
                                                           (d / "one.safetensors").string(),
                                                           "--out", (d / "one.json").string()});
  INFO(one.err);
  REQUIRE(one.exit_code == 0);
  auto two =
      run_sparsetrain(tiny("3") + std::vector<std::string>{"--nproc", "2", "--export",
                                                           (d / "two.safetensors").string(),
                                                           "--out", (d / "two.json").string()});
  INFO(two.err);
  REQUIRE(two.exit_code == 0);
  CHECK(read_bytes(d / "one.safetensors") == read_bytes(d / "two.safetensors"));
  const auto a = read_json(d / "one.json");
  const auto b = read_json(d / "two.json");
  CHECK(a["metrics"]["losses"] == b["metrics"]["losses"]);
  CHECK(b["metrics"]["world_size"] == 2);
  CHECK(b["metrics"]["tokens_per_step"] == a["metrics"]["tokens_per_step"]);
  // Rank 1's record beside rank 0's, and both in rank 0's merged one.
  const auto r1 = read_json(d / "two.rank1.json");
  CHECK(r1["metrics"]["rank"] == 1);
  CHECK(r1["metrics"]["losses"] == b["metrics"]["losses"]);
  REQUIRE(b["metrics"]["ranks"].size() == 2);
  CHECK(b["metrics"]["ranks"][1]["rank"] == 1);
}

TEST_CASE(
    "offloaded ranks (states in their stores, clipping) equal --accum: 2 bit for bit, 3 "
    "within 1e-6") {
  const fs::path d = scratch("offload");
  for (const int ranks : {2, 3}) {
    const std::string r = std::to_string(ranks);
    fs::create_directories(d / ("one" + r));
    fs::create_directories(d / ("many" + r));
    const std::string one_export = (d / ("one" + r + ".safetensors")).string();
    const std::string one_record = (d / ("one" + r + ".json")).string();
    auto one = run_sparsetrain(
        tiny("3") + offloaded(d / ("one" + r)) +
        std::vector<std::string>{"--accum", r, "--export", one_export, "--out", one_record});
    INFO(one.err);
    REQUIRE(one.exit_code == 0);
    auto many =
        run_sparsetrain(tiny("3") + offloaded(d / ("many" + r)) +
                        std::vector<std::string>{"--nproc", r, "--export",
                                                 (d / ("many" + r + ".safetensors")).string(),
                                                 "--out", (d / ("many" + r + ".json")).string()});
    INFO(many.err);
    REQUIRE(many.exit_code == 0);
    const auto a = read_json(d / ("one" + r + ".json"));
    const auto b = read_json(d / ("many" + r + ".json"));
    REQUIRE(a["metrics"]["offload"]["states"] == "store");
    REQUIRE(b["metrics"]["offload"]["states"] == "store");
    for (int k = 0; k < ranks; ++k) {  // each rank its own store
      const fs::path store = d / ("many" + r) / ("rank-" + std::to_string(k));
      CHECK(fs::exists(store / "sparsetrain-store.json"));
    }
    if (ranks == 2) {  // a sum of two is the same addition
      CHECK(read_bytes(d / "one2.safetensors") == read_bytes(d / "many2.safetensors"));
      CHECK(a["metrics"]["losses"] == b["metrics"]["losses"]);
    } else {  // Gloo's ring adds three in another order
      for (std::size_t s = 0; s < a["metrics"]["losses"].size(); ++s) {
        const double x = a["metrics"]["losses"][s], y = b["metrics"]["losses"][s];
        CHECK(std::abs(x - y) <= 1e-6 * std::abs(x));
      }
    }
  }
}

TEST_CASE("a rank killed mid-step stops the other, and --resume continues bit for bit") {
  const fs::path d = scratch("kill");
  fs::create_directories(d / "whole");
  fs::create_directories(d / "run");
  const std::vector<std::string> base = tiny("10");
  auto whole = run_sparsetrain(
      base + offloaded(d / "whole") +
      std::vector<std::string>{"--nproc", "2", "--export", (d / "whole.safetensors").string()});
  INFO(whole.err);
  REQUIRE(whole.exit_code == 0);

  std::mt19937 rng(static_cast<unsigned>(::getpid()));
  const int kill_after = 2 + static_cast<int>(rng() % 5);
  const int delay_ms = static_cast<int>(rng() % 40);
  MESSAGE("killing rank 1 " << delay_ms << " ms after its step " << kill_after << " is committed");
  const std::vector<std::string> args =
      base + offloaded(d / "run") + std::vector<std::string>{"--dist-timeout", "10"};
  const int port = free_port();
  const pid_t r0 = spawn_rank(args, 0, 2, port, d / "r0.err");
  const pid_t r1 = spawn_rank(args, 1, 2, port, d / "r1.err");
  const bool reached =
      wait_for_store_version(d / "run" / "rank-1" / "sparsetrain-store.json", kill_after + 1);
  if (reached) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  ::kill(r1, SIGKILL);
  ::waitpid(r1, nullptr, 0);
  REQUIRE(reached);
  // Rank 0 fails within its collective timeout (10 s) instead of waiting forever.
  const int code0 = wait_process(r0, 40);
  INFO(read_bytes(d / "r0.err"));
  CHECK(code0 != 0);
  CHECK(code0 != -1);

  const int port2 = free_port();
  const std::vector<std::string> resume =
      args + std::vector<std::string>{"--resume", "--export", (d / "resumed.safetensors").string()};
  const pid_t q0 = spawn_rank(resume, 0, 2, port2, d / "q0.err");
  const pid_t q1 = spawn_rank(resume, 1, 2, port2, d / "q1.err");
  const int c0 = wait_process(q0, 120), c1 = wait_process(q1, 120);
  INFO(read_bytes(d / "q0.err"));
  INFO(read_bytes(d / "q1.err"));
  REQUIRE(c0 == 0);
  REQUIRE(c1 == 0);
  CHECK(read_bytes(d / "resumed.safetensors") == read_bytes(d / "whole.safetensors"));
}

TEST_CASE("launch errors: mismatched flags, no master, unknown backends, a changed world size") {
  const fs::path d = scratch("errors");
  SUBCASE("ranks started with different flags all stop with exit 2, naming the rank") {
    const int port = free_port();
    const pid_t a = spawn_rank(tiny("2"), 0, 2, port, d / "a.err");
    const pid_t b =
        spawn_rank(tiny("2") + std::vector<std::string>{"--lr", "1e-4"}, 1, 2, port, d / "b.err");
    CHECK(wait_process(a, 60) == 2);
    CHECK(wait_process(b, 60) == 2);
    CHECK(read_bytes(d / "a.err").find("rank 1's command line differs from rank 0's") !=
          std::string::npos);
  }
  SUBCASE("a rank that cannot reach the master fails within --dist-timeout, naming the address") {
    const int port = free_port();
    const pid_t a = spawn_rank(tiny("2") + std::vector<std::string>{"--dist-timeout", "2"}, 1, 2,
                               port, d / "a.err");
    CHECK(wait_process(a, 60) == 3);
    CHECK(read_bytes(d / "a.err")
              .find("cannot reach the master at 127.0.0.1:" + std::to_string(port)) !=
          std::string::npos);
  }
  SUBCASE("unknown and unavailable backends") {
    auto r = run_sparsetrain(tiny("2") +
                             std::vector<std::string>{"--nproc", "2", "--dist-backend", "mpi"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("unknown --dist-backend 'mpi'") != std::string::npos);
    r = run_sparsetrain(tiny("2") +
                        std::vector<std::string>{"--nproc", "2", "--dist-backend", "nccl"});
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("no NCCL process group") != std::string::npos);
  }
  SUBCASE("--resume with another world size is refused on every rank") {
    fs::create_directories(d / "s");
    auto r =
        run_sparsetrain(tiny("2") + offloaded(d / "s") + std::vector<std::string>{"--nproc", "2"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    // Three ranks: the stores of ranks 0 and 1 say two.
    fs::create_directories(d / "s" / "rank-2");
    r = run_sparsetrain(tiny("2") + offloaded(d / "s") +
                        std::vector<std::string>{"--nproc", "3", "--resume"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("differs from rank 0's") != std::string::npos);
  }
}
