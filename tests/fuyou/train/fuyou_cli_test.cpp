// `sparsetrain fuyou describe` and `fuyou finetune` from the command line: figures, exit codes,
// reproducible seeded runs, learning on the built-in text, export/--init round trip, token files.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "cli/cli_support.h"

using sparsetrain::test::run_sparsetrain;
namespace fs = std::filesystem;
using sparsetrain::test::read_json;

namespace {

fs::path scratch_dir() { return sparsetrain::test::scratch_dir("st-fuyou-cli"); }

// The test machine is shared and oversubscribed: OpenMP's spin-waiting threads then slow these
// small models tenfold. One intra-op thread (unless the caller chose) keeps the suite fast.
const bool kOneThread = (::setenv("OMP_NUM_THREADS", "1", /*overwrite=*/0), true);

// An llm.c .bin file: 256 int32 header (magic 20240520, version 1, count), then uint16 tokens.
void write_llmc(const fs::path& path, const std::vector<std::uint16_t>& tokens) {
  std::vector<std::int32_t> header(256, 0);
  header[0] = 20240520;
  header[1] = 1;
  header[2] = static_cast<std::int32_t>(tokens.size());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(header.data()), 256 * 4);
  out.write(reinterpret_cast<const char*>(tokens.data()),
            static_cast<std::streamsize>(tokens.size() * 2));
}

// A short seeded tiny run: the arguments every reproducibility check shares.
std::vector<std::string> tiny_run(const fs::path& out, const std::string& seed,
                                  const std::string& steps = "12") {
  return {"fuyou",         "finetune", "--model",        "tiny",      "--steps", steps,
          "--micro-batch", "4",        "--seq",          "32",        "--accum", "2",
          "--eval-every",  "6",        "--eval-batches", "2",         "--seed",  seed,
          "--progress",    "never",    "--out",          out.string()};
}

}  // namespace

TEST_CASE("describe prints GPT-2's 124,439,808 parameters and records FLOPs and state bytes") {
  const fs::path out = scratch_dir() / "describe.json";
  auto r = run_sparsetrain({"fuyou", "describe", "--model", "gpt2", "--out", out.string()});
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("124,439,808") != std::string::npos);
  const nlohmann::json m = read_json(out)["metrics"]["models"][0];
  CHECK(m["parameters"] == 124439808);
  CHECK(m["model_state_bytes"].get<double>() == doctest::Approx(124439808.0 * 16));
  // 6·N + 12·L·C·T with N = 124,439,808 − 1024·768 and T = 1024.
  CHECK(m["train_flops_per_token"].get<double>() ==
        doctest::Approx(6.0 * (124439808 - 786432) + 12.0 * 12 * 768 * 1024));
}

TEST_CASE(
    "describe all lists every preset up to GPT-3 175B; an unknown model exits 2 with a hint") {
  auto all = run_sparsetrain({"fuyou", "describe", "--model", "all"});
  CHECK(all.exit_code == 0);
  CHECK(all.out.find("gpt3-175b") != std::string::npos);
  auto bad = run_sparsetrain({"fuyou", "describe", "--model", "gpt-17"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("unknown model 'gpt-17'") != std::string::npos);
  CHECK(bad.err.find("hint: ") != std::string::npos);
}

TEST_CASE("two seeded finetune runs on tiny give identical losses; another seed differs") {
  const fs::path a = scratch_dir() / "a.json", b = scratch_dir() / "b.json",
                 c = scratch_dir() / "c.json";
  REQUIRE(run_sparsetrain(tiny_run(a, "3")).exit_code == 0);
  REQUIRE(run_sparsetrain(tiny_run(b, "3")).exit_code == 0);
  REQUIRE(run_sparsetrain(tiny_run(c, "4")).exit_code == 0);
  const nlohmann::json ra = read_json(a), rb = read_json(b), rc = read_json(c);
  CHECK(ra["metrics"]["losses"].size() == 12);
  CHECK(ra["metrics"]["val_losses"].size() == 3);  // before training, step 6, step 12
  CHECK(ra["metrics"]["losses"] == rb["metrics"]["losses"]);
  CHECK(ra["metrics"]["val_losses"] == rb["metrics"]["val_losses"]);
  CHECK(ra["metrics"] == rb["metrics"]);
  CHECK(ra["metrics"]["losses"] != rc["metrics"]["losses"]);
  // The first loss of an untrained byte model is near log(256).
  CHECK(ra["metrics"]["losses"][0].get<double>() == doctest::Approx(std::log(256.0)).epsilon(0.05));
  CHECK(ra["run"]["throughput"]["tokens_per_s"].get<double>() > 0);
  CHECK(ra["run"]["timings_s"].contains("forward_backward"));
  CHECK(ra["run"]["timings_s"].contains("optimizer"));
}

TEST_CASE("a small model's loss on the built-in text falls well below log(256) in 300 steps") {
  const fs::path out = scratch_dir() / "learn.json";
  auto r = run_sparsetrain({"fuyou", "finetune",      "--model",  "tiny",  "--steps",
                            "300",   "--micro-batch", "16",       "--seq", "64",
                            "--lr",  "3e-3",          "--warmup", "20",    "--eval-every",
                            "100",   "--progress",    "never",    "--out", out.string()});
  REQUIRE(r.exit_code == 0);
  const nlohmann::json m = read_json(out)["metrics"];
  const double first = m["losses"][0].get<double>();
  const double final_val = m["final_val_loss"].get<double>();
  MESSAGE("loss " << first << " -> validation " << final_val << " (log 256 = 5.545)");
  CHECK(first > 5.0);
  CHECK(final_val < 3.0);
}

TEST_CASE("exported weights load back with --init and reproduce the final validation loss") {
  const fs::path first = scratch_dir() / "first.json", second = scratch_dir() / "second.json";
  const fs::path weights = scratch_dir() / "tiny.safetensors";
  std::vector<std::string> args = tiny_run(first, "5");
  args.insert(args.end(), {"--export", weights.string()});
  REQUIRE(run_sparsetrain(args).exit_code == 0);
  REQUIRE(fs::exists(weights));
  std::vector<std::string> again = tiny_run(second, "5", /*steps=*/"1");
  again.insert(again.end(), {"--init", weights.string()});
  REQUIRE(run_sparsetrain(again).exit_code == 0);
  // Same seed -> same validation batches; fp32 export -> the same model.
  CHECK(read_json(second)["metrics"]["initial_val_loss"] ==
        read_json(first)["metrics"]["final_val_loss"]);
  // The offloaded trainer reads the checkpoint tensor by tensor into its store: the same model.
  const fs::path third = scratch_dir() / "third.json", store = scratch_dir() / "init-store";
  fs::remove_all(store);
  fs::create_directories(store);
  std::vector<std::string> offloaded = tiny_run(third, "5", /*steps=*/"1");
  offloaded.insert(offloaded.end(),
                   {"--init", weights.string(), "--ssd", store.string(), "--cpu-mem", "2MiB"});
  const auto r = run_sparsetrain(offloaded);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(read_json(third)["metrics"]["initial_val_loss"] ==
        read_json(first)["metrics"]["final_val_loss"]);
}

TEST_CASE(
    "llm.c token files train a model with a large enough vocabulary and are refused otherwise") {
  std::vector<std::uint16_t> tokens(4000);
  for (std::size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<std::uint16_t>((i * 7) % 300);
  const fs::path bin = scratch_dir() / "tokens.bin";
  write_llmc(bin, tokens);
  auto small_vocab = run_sparsetrain({"fuyou", "finetune", "--model", "tiny", "--data",
                                      bin.string(), "--steps", "2", "--progress", "never"});
  CHECK(small_vocab.exit_code == 2);
  CHECK(small_vocab.err.find("vocabulary of 256") != std::string::npos);
  const fs::path out = scratch_dir() / "bin.json";
  auto ok = run_sparsetrain({"fuyou", "finetune", "--model", "custom:L=1,C=32,H=2,V=300,T=64",
                             "--data", bin.string(), "--steps", "2", "--seq", "32", "--micro-batch",
                             "2", "--progress", "never", "--out", out.string()});
  REQUIRE(ok.exit_code == 0);
  CHECK(read_json(out)["metrics"]["data"]["train_tokens"] == 3600);
}

TEST_CASE("bad finetune inputs exit 2 and name the problem; --dry-run trains nothing") {
  CHECK(run_sparsetrain({"fuyou", "finetune", "--model", "tiny", "--seq", "4096"}).exit_code == 2);
  CHECK(run_sparsetrain({"fuyou", "finetune", "--steps", "0"}).exit_code == 2);
  CHECK(run_sparsetrain({"fuyou", "finetune", "--data", "/no/such/file"}).exit_code == 2);
  const fs::path text = scratch_dir() / "short.txt";
  std::ofstream(text) << "too short";
  auto r = run_sparsetrain({"fuyou", "finetune", "--data", text.string(), "--seq", "64"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("too short") != std::string::npos);
  // A loss mask needs a token file it belongs to.
  r = run_sparsetrain({"fuyou", "finetune", "--loss-mask", text.string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--loss-mask needs --data") != std::string::npos);
  r = run_sparsetrain({"fuyou", "finetune", "--data", text.string(), "--loss-mask", text.string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--loss-mask goes with a token file") != std::string::npos);
  const fs::path tokens = scratch_dir() / "masked.bin";
  {  // an llm.c token file: magic 20240520, version 1, 300 tokens of id 7 (uint16)
    std::vector<std::int32_t> header(256, 0);
    header[0] = 20240520;
    header[1] = 1;
    header[2] = 300;
    const std::vector<std::uint16_t> ids(300, 7);
    std::ofstream out(tokens, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header.data()), 1024);
    out.write(reinterpret_cast<const char*>(ids.data()), 600);
  }
  r = run_sparsetrain(
      {"fuyou", "finetune", "--data", tokens.string(), "--loss-mask", text.string()});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("loss mask '" + text.string() + "' has") != std::string::npos);
  auto dry = run_sparsetrain({"fuyou", "finetune", "--model", "gpt3-175b", "--dry-run"});
  CHECK(dry.exit_code == 0);
  CHECK(dry.out.find("would fine-tune gpt3-175b") != std::string::npos);
}
