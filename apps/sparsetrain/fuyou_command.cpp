// `sparsetrain fuyou …`: fine-tuning beyond GPU and CPU memory, streaming states from SSDs.
//   fuyou describe  — a model's parameters, FLOPs per token and bytes of model states
//   fuyou finetune  — fine-tuning (CPU fp32, or CUDA bf16) on token data or built-in text: in
//                     memory, or with --ssd offloaded (master weights and Adam states in the store)
// CLI wiring only: the model and trainer live in lib/fuyou.
#include <ATen/Context.h>
#include <ATen/ops/empty.h>
#include <torch/cuda.h>

#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "cli.h"
#include "common/atomic_file.h"
#include "common/error.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/units.h"
#include "fuyou/model/demo_text.h"
#include "fuyou/model/gpt_model.h"
#include "fuyou/model/hf_config.h"
#include "fuyou/model/hf_export.h"
#include "fuyou/model/hf_gpt2.h"
#include "fuyou/model/llama_model.h"
#include "fuyou/model/model_config.h"
#include "fuyou/model/token_data.h"
#include "fuyou/offload/offload_plan_json.h"
#include "fuyou/offload/offload_rates.h"
#include "fuyou/offload/offload_stats.h"
#include "fuyou/offload/offload_trainer.h"
#include "fuyou/train/in_memory_trainer.h"
#include "fuyou_ranks.h"

namespace sparsetrain::cli {

namespace {

namespace fs = std::filesystem;

namespace fy = fuyou;

// "1.23 B", "124.4 M", "950 k": counts and FLOPs in decimal prefixes.
std::string format_si(double value, const char* unit = "") {
  const char* prefixes[] = {"", "k", "M", "G", "T", "P", "E"};
  int i = 0;
  while (std::abs(value) >= 1000 && i < 6) {
    value /= 1000;
    ++i;
  }
  char text[64];
  std::snprintf(text, sizeof text, value >= 100 ? "%.0f" : "%.3g", value);
  const std::string suffix = std::string(prefixes[i]) + unit;
  return suffix.empty() ? std::string(text) : std::string(text) + " " + suffix;
}

std::string with_commas(std::int64_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

nlohmann::json model_json(const fy::ModelConfig& c) {
  nlohmann::json j = {{"name", c.name},
                      {"family", fy::model_family_name(c.family)},
                      {"layers", c.n_layer},
                      {"hidden", c.n_embd},
                      {"heads", c.n_head},
                      {"vocab", c.vocab},
                      {"positions", c.n_positions},
                      {"parameters", c.param_count()}};
  if (c.llama()) {
    j["kv_heads"] = c.n_kv_head;
    j["head_dim"] = c.head_dim();
    j["intermediate"] = c.intermediate;
    j["rope_theta"] = c.rope_theta;
    j["rope_scaling"] = c.rope_scaling.type;
    j["qkv_bias"] = c.qkv_bias;
    j["tied_head"] = c.tie_word_embeddings;
  }
  return j;
}

// ---------------------------------------------------------------------------------------------
// fuyou describe

struct DescribeOptions {
  std::string model = "gpt3-125m";
  std::string model_dir;  // a Hugging Face model directory's config.json instead of a preset
  std::int64_t seq = 0;   // 0 = the model's positions
};

void describe_one(const fy::ModelConfig& c, std::int64_t seq, nlohmann::json& out) {
  const std::int64_t t = seq > 0 ? seq : c.n_positions;
  const std::int64_t params = c.param_count();
  const double flops = c.train_flops_per_token(t);
  const double flops_rc = c.train_flops_per_token_recompute(t);
  const double states = static_cast<double>(params) * fy::kMixedPrecisionStateBytesPerParam;
  const double act_per_token = static_cast<double>(c.n_layer * c.n_embd * 2);  // bf16 block inputs
  std::cout << "model         " << c.name << ": " << fy::model_family_name(c.family) << " blocks, "
            << c.n_layer << " layers, hidden " << c.n_embd << ", " << c.n_head << " heads of "
            << c.head_dim();
  if (c.llama()) {
    std::cout << " (" << c.n_kv_head << " key/value heads), SwiGLU " << c.intermediate
              << ", rope theta " << c.rope_theta
              << (c.rope_scaling.type == "default" ? "" : " (" + c.rope_scaling.type + " scaling)")
              << (c.qkv_bias ? ", q/k/v biases" : "");
  }
  std::cout << ", vocab " << c.vocab << ", " << c.n_positions << " positions\n"
            << "parameters    " << with_commas(params) << " ("
            << format_si(static_cast<double>(params)) << "); per block "
            << with_commas(c.block_param_count()) << ", embeddings ";
  if (c.llama()) {
    std::cout << with_commas(c.vocab * c.n_embd)
              << (c.tie_word_embeddings ? " (LM head tied to them)\n"
                                        : " + LM head " + with_commas(c.vocab * c.n_embd) + "\n");
  } else {
    std::cout << with_commas((c.vocab + c.n_positions) * c.n_embd) << " (LM head tied to wte)\n";
  }
  std::cout << "FLOPs/token   " << format_si(flops, "FLOP") << " training at seq " << t
            << " (6·N + 12·L·A·T, N = " << with_commas(c.flops_param_count())
            << (c.llama() ? " without the embedding lookup" : " without wpe") << "); "
            << format_si(flops_rc, "FLOP") << " with block recompute\n"
            << "model states  " << common::format_bytes(states)
            << " at 16 B/param (bf16 weights 2 + bf16 grads 2 + fp32 master 4 + Adam m 4 + v 4)\n"
            << "activations   " << common::format_bytes(act_per_token)
            << " per token of saved block inputs (L·C·2 B in bf16)\n";
  nlohmann::json j = model_json(c);
  j["seq"] = t;
  j["block_parameters"] = c.block_param_count();
  j["flops_parameters"] = c.flops_param_count();
  j["train_flops_per_token"] = flops;
  j["train_flops_per_token_recompute"] = flops_rc;
  j["flops_formula"] =
      c.llama() ? "6*N + 12*L*H*d*T, N = parameters without the embedding lookup"
                : "6*N + 12*L*C*T (recompute: + L*(16*C^2 + 4*C*T)), N = parameters without wpe";
  j["model_state_bytes"] = states;
  j["model_state_bytes_per_param"] = fy::kMixedPrecisionStateBytesPerParam;
  j["block_input_bytes_per_token"] = act_per_token;
  out.push_back(std::move(j));
}

void run_describe(const DescribeOptions& options, CommandContext& context) {
  nlohmann::json models = nlohmann::json::array();
  if (options.model == "all") {
    bool first = true;
    for (const std::string& name : fy::model_preset_names()) {
      if (!first) std::cout << "\n";
      first = false;
      describe_one(fy::model_config_from_name(name), options.seq, models);
    }
  } else if (!options.model_dir.empty()) {
    describe_one(fy::model_config_from_hf(options.model_dir), options.seq, models);
  } else {
    describe_one(fy::model_config_from_name(options.model), options.seq, models);
  }
  context.record.metrics()["models"] = std::move(models);
}

void add_describe_command(CLI::App& fuyou) {
  auto options = std::make_shared<DescribeOptions>();
  CLI::App* sub = fuyou.add_subcommand(
      "describe", "Print a model's parameters, FLOPs per token and bytes of model states");
  CLI::Option* model = sub->add_option("--model", options->model,
                                       "Preset (tiny, small, gpt2, gpt3-125m … gpt3-175b, "
                                       "llama3.2-1b … llama3.1-405b, mistral-7b-v0.3, qwen2.5-7b, "
                                       "qwen2.5-72b), custom:L=..,C=..,H=.., or all");
  sub->add_option("--model-dir", options->model_dir,
                  "A Hugging Face model directory (its config.json) instead of --model")
      ->excludes(model);
  sub->add_option("--seq", options->seq, "Sequence length for FLOPs (0 = the model's positions)")
      ->check(CLI::NonNegativeNumber);
  sub->footer(
      "Examples:\n"
      "  sparsetrain fuyou describe --model gpt3-175b\n"
      "  sparsetrain fuyou describe --model all --seq 1024 --out models.json");
  set_command_runner(sub, [options](CommandContext& context) { run_describe(*options, context); });
}

// ---------------------------------------------------------------------------------------------
// fuyou finetune

struct FinetuneOptions {
  std::string model = "tiny";
  std::string init;       // HF GPT-2 safetensors
  std::string model_dir;  // a Hugging Face model directory: config.json and its weights
  std::string data;       // llm.c .bin or text; empty = built-in text
  std::string loss_mask;  // a loss mask file, "none", or empty: the data's sibling .mask if any
  std::string device = "auto";
  std::string export_path;
  std::string export_dtype = "auto";  // fp32 for one .safetensors file, bf16 for a directory
  std::string export_shard = "5GB";   // a directory's shards
  double valid_fraction = 0.1;
  fy::TrainOptions train;
  // Offload (Fuyou): on with --ssd.
  std::vector<std::string> ssd;
  std::string cpu_mem;  // required with --ssd
  std::string gpu_mem;  // compute tier; empty = no limit
  bool resume = false;
  std::int64_t commit_every = 1;
  std::string state_piece;              // empty = the default (64 MiB of each of master, m, v)
  std::string stream = "auto";          // granularity: auto, block, piece
  std::string store_slots = "auto";     // auto, 1, 2
  std::string activations = "auto";     // auto, recompute, keep-all, or lists (offload_plan.h)
  std::string activations_in = "auto";  // auto, compute, cpu, store
  // Hardware a --dry-run assumes instead of measuring (empty = measured / the directories).
  std::string assume_ssd;   // COUNTxSIZE@READ[,WRITE]
  std::string assume_pcie;  // H2D[,D2H]
  double assume_tflops = 0;
  RankFlags ranks;  // data parallel (fuyou_ranks.h)
  bool assumes() const { return !assume_ssd.empty() || !assume_pcie.empty() || assume_tflops > 0; }
};

// "2GB/s" -> 2e9 bytes/s (a size as common/units.h reads it, then "/s").
double parse_rate(const std::string& text, const std::string& flag) {
  const std::string hint = flag + " takes rates like 2GB/s or 3.5GiB/s";
  if (text.size() < 3 || text.compare(text.size() - 2, 2, "/s") != 0) {
    throw common::UsageError(flag + ": '" + text + "' is not a rate", hint);
  }
  const double rate = static_cast<double>(common::parse_bytes(text.substr(0, text.size() - 2)));
  if (rate <= 0) throw common::UsageError(flag + ": rate '" + text + "' is zero", hint);
  return rate;
}

// "A[,B]" -> {A, B}, B = A when absent.
std::pair<double, double> parse_rate_pair(const std::string& text, const std::string& flag) {
  const auto comma = text.find(',');
  const double first = parse_rate(text.substr(0, comma), flag);
  return {first, comma == std::string::npos ? first : parse_rate(text.substr(comma + 1), flag)};
}

// "12x4TB@2GB/s" or "4x3.84TB@7GB/s,5GB/s": count, size of each, read[, write] rate of each.
fy::AssumedSsds parse_assumed_ssds(const std::string& text) {
  const std::string hint =
      "write --assume-ssd COUNTxSIZE@READ[,WRITE], e.g. 4x4TB@2GB/s (each disk's size and rates)";
  const auto x = text.find('x'), at = text.find('@');
  if (x == std::string::npos || at == std::string::npos || at < x) {
    throw common::UsageError("--assume-ssd '" + text + "' is not COUNTxSIZE@READ[,WRITE]", hint);
  }
  fy::AssumedSsds ssds;
  try {
    std::size_t used = 0;
    ssds.count = std::stoll(text.substr(0, x), &used);
    if (used != x) throw std::invalid_argument("trailing text");
  } catch (const std::exception&) {
    throw common::UsageError("--assume-ssd '" + text + "': bad disk count", hint);
  }
  if (ssds.count < 1) throw common::UsageError("--assume-ssd needs at least one disk", hint);
  ssds.bytes_each = common::parse_bytes(text.substr(x + 1, at - x - 1));
  if (ssds.bytes_each == 0) throw common::UsageError("--assume-ssd: disks of 0 bytes", hint);
  if (ssds.bytes_each > UINT64_MAX / static_cast<std::uint64_t>(ssds.count)) {
    throw common::UsageError("--assume-ssd '" + text + "': more than 2^64 bytes in all", hint);
  }
  std::tie(ssds.read_bytes_per_s_each, ssds.write_bytes_per_s_each) =
      parse_rate_pair(text.substr(at + 1), "--assume-ssd");
  return ssds;
}

// Per step, averaged over the run's steps: the kept activations' bytes each way per tier, the
// recompute's FLOPs, and the bound's terms predicted against measured — compute (the compute
// thread's forward and backward, less its waits for streamed blocks), cpu_adam (the optimizer
// thread's AdamW), the step — and the SSD and PCIe bytes the plan counts against those moved.
nlohmann::json per_step_json(const fy::OffloadPlan& plan, const fy::OffloadStats& stats) {
  const double steps = static_cast<double>(std::max<std::int64_t>(1, stats.steps));
  auto phase = [](const common::PhaseTimes& phases, const char* name) {
    const auto it = phases.all().find(name);
    return it == phases.all().end() ? 0.0 : it->second;
  };
  auto per = [steps](double total) { return total / steps; };
  nlohmann::json j;
  j["activation_bytes"] = {{"to_cpu", per(static_cast<double>(stats.activation_bytes_to_cpu))},
                           {"from_cpu", per(static_cast<double>(stats.activation_bytes_from_cpu))},
                           {"to_store", per(static_cast<double>(stats.activation_bytes_written))},
                           {"from_store", per(static_cast<double>(stats.activation_bytes_read))}};
  j["recompute_flops"] = {{"predicted", plan.activations.recompute_flops},
                          {"measured", per(stats.recompute_flops)}};
  nlohmann::json terms;
  for (const fy::BoundTerm& term : plan.terms) terms[term.name]["predicted"] = term.seconds;
  terms["compute"]["measured"] =
      per(phase(stats.compute_phases, "forward") + phase(stats.compute_phases, "backward") -
          stats.stream_wait_seconds);
  terms["cpu_adam"]["measured"] = per(phase(stats.optimizer_phases, "adam"));
  j["terms"] = terms;
  j["step_seconds"] = {{"predicted", plan.bound_seconds}, {"measured", stats.step_seconds}};
  // Validation passes are not steps: their streamed loads are in the measured bytes too.
  j["bytes"] = {{"ssd_read",
                 {{"predicted", plan.ssd_read_bytes},
                  {"measured", per(static_cast<double>(stats.ssd_read_bytes))}}},
                {"ssd_write",
                 {{"predicted", plan.ssd_write_bytes},
                  {"measured", per(static_cast<double>(stats.ssd_write_bytes))}}},
                {"pcie_h2d",
                 {{"predicted", plan.pcie_h2d_bytes},
                  {"measured", per(static_cast<double>(stats.pcie_h2d_bytes))}}},
                {"pcie_d2h",
                 {{"predicted", plan.pcie_d2h_bytes},
                  {"measured", per(static_cast<double>(stats.pcie_d2h_bytes))}}}};
  return j;
}

fy::OffloadOptions offload_options_of(const FinetuneOptions& options,
                                      const fy::ModelConfig& config) {
  fy::OffloadOptions o;
  o.ssd_dirs = options.ssd;  // a rank's own (run_finetune: fy::rank_path)
  if (options.cpu_mem.empty()) {
    throw common::UsageError("--ssd needs --cpu-mem (the CPU budget for optimizer states)",
                             "add e.g. --cpu-mem 8GiB");
  }
  o.budgets.cpu_bytes = common::parse_bytes(options.cpu_mem);
  o.budgets.compute_bytes = options.gpu_mem.empty() ? 0 : common::parse_bytes(options.gpu_mem);
  o.resume = options.resume;
  o.commit_every = options.commit_every;
  if (!options.state_piece.empty()) {
    const std::uint64_t bytes = common::parse_bytes(options.state_piece);
    if (bytes < 4096) {
      throw common::UsageError("--state-piece " + options.state_piece + " is below 4 KiB",
                               "use e.g. --state-piece 64MiB (the default)");
    }
    o.state_piece_floats = static_cast<std::int64_t>(bytes / 4);
  }
  o.pieces_per_block = options.stream == "block"   ? 1
                       : options.stream == "piece" ? config.block_piece_count()
                                                   : 0;
  o.store_slots = options.store_slots == "auto" ? 0 : std::stoll(options.store_slots);
  if (!options.assume_ssd.empty()) o.assumed_ssds = parse_assumed_ssds(options.assume_ssd);
  o.activations = fy::parse_activation_request(options.activations, config.n_layer);
  o.activations.tier = fy::parse_activation_tier(options.activations_in);
  return o;
}

// --assume-pcie and --assume-tflops over the rates (--assume-ssd's are in with_assumed_ssds).
fy::OffloadRates with_assumptions(fy::OffloadRates rates, const FinetuneOptions& options,
                                  const fy::OffloadOptions& offload) {
  if (offload.assumed_ssds) rates = fy::with_assumed_ssds(rates, *offload.assumed_ssds);
  if (!options.assume_pcie.empty()) {
    std::tie(rates.pcie_h2d_bytes_per_s, rates.pcie_d2h_bytes_per_s) =
        parse_rate_pair(options.assume_pcie, "--assume-pcie");
  }
  if (options.assume_tflops > 0) rates.compute_flops_per_s = options.assume_tflops * 1e12;
  return rates;
}

// llm.c .bin files start with the int32 magic 20240520 (GPT-2, uint16) or 20240801 (Llama 3,
// uint32); anything else is read as text.
bool looks_like_llmc(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::int32_t magic = 0;
  in.read(reinterpret_cast<char*>(&magic), sizeof magic);
  return in.gcount() == sizeof magic && (magic == 20240520 || magic == 20240801);
}

// The loss mask for token file `data`: --loss-mask's file, none for "none", else the file beside
// it with .mask for .bin (scripts/prepare_tokens.py writes both) when there is one.
std::string loss_mask_path(const FinetuneOptions& options) {
  if (options.loss_mask == "none") return "";
  if (!options.loss_mask.empty()) return options.loss_mask;
  fs::path beside(options.data);
  beside.replace_extension(".mask");
  return fs::is_regular_file(beside) ? beside.string() : "";
}

fy::TokenData load_tokens(const FinetuneOptions& options, std::string& source) {
  if (options.data.empty()) {
    if (!options.loss_mask.empty() && options.loss_mask != "none") {
      throw common::UsageError("--loss-mask needs --data: the built-in text has no mask",
                               "pass the token file the mask belongs to with --data");
    }
    source = "built-in text (data/fuyou/demo_text.txt, bytes)";
    return fy::TokenData::from_bytes(std::string(fy::demo_text()), "built-in text");
  }
  const bool bin =
      looks_like_llmc(options.data) ||
      (options.data.size() > 4 && options.data.compare(options.data.size() - 4, 4, ".bin") == 0);
  source = options.data + (bin ? " (llm.c tokens)" : " (text, bytes)");
  if (!bin) {
    if (!options.loss_mask.empty() && options.loss_mask != "none") {
      throw common::UsageError("--loss-mask goes with a token file, not text read as bytes",
                               "prepare the text with scripts/prepare_tokens.py");
    }
    return fy::TokenData::from_text_file(options.data);
  }
  fy::TokenData tokens = fy::TokenData::from_llmc_bin(options.data);
  const std::string mask = loss_mask_path(options);
  if (mask.empty()) return tokens;
  tokens = tokens.with_loss_mask(mask);
  source += " masked by " + mask;
  common::log_info("loss mask ", mask, ": ", tokens.trained_tokens(), " of ", tokens.size(),
                   " tokens trained as targets");
  return tokens;
}

// A dry run may plan a CUDA run on a machine without a GPU (with the reference GPU's rates).
fy::TrainDevice resolve_device(const std::string& device, bool dry_run) {
  if (device == "cpu") return fy::TrainDevice::kCpu;
  const bool cuda = torch::cuda::is_available();
  if (device == "cuda" && !cuda && dry_run) return fy::TrainDevice::kCuda;
  if (device == "cuda" && !cuda) {
    throw common::EnvironmentError("--device cuda: no CUDA device is visible",
                                   "run on a GPU machine or pass --device cpu");
  }
  return cuda ? fy::TrainDevice::kCuda : fy::TrainDevice::kCpu;
}

void report_result(const fy::TrainResult& result, const fy::ModelConfig& config,
                   const FinetuneOptions& options, CommandContext& context) {
  nlohmann::json& metrics = context.record.metrics();
  for (const auto& [phase, seconds] : result.phases.all())
    context.record.timings().add(phase, seconds);
  metrics["losses"] = result.losses;
  nlohmann::json val = nlohmann::json::array();
  for (const auto& [step, loss] : result.val_losses)
    val.push_back({{"step", step}, {"loss", loss}});
  metrics["val_losses"] = std::move(val);
  if (!result.val_losses.empty()) {
    metrics["initial_val_loss"] = result.val_losses.front().second;
    metrics["final_val_loss"] = result.val_losses.back().second;
  }
  if (!result.losses.empty()) metrics["final_loss"] = result.losses.back();
  metrics["train_tokens_processed"] = result.tokens;
  metrics["train_flops_per_token"] = config.train_flops_per_token(options.train.seq);
  metrics["flops_formula"] =
      "TFLOPS = tokens/s * (6*N + 12*L*C*T) / 1e12, N = parameters without wpe (model FLOPs); "
      "tflops_recompute uses 8*N + 16*L*C*T (each block's forward runs twice)";
  // Throughput depends on the machine: it goes to the volatile "run" block of the record.
  context.record.run_extra()["throughput"] = {{"tokens_per_s", result.tokens_per_s},
                                              {"tflops", result.tflops},
                                              {"tflops_recompute", result.tflops_recompute},
                                              {"train_seconds", result.train_seconds}};
}

// Progress line per step, shared by both trainers.
// Each step also goes into the record's metrics as it ends (losses, validation losses, the last
// step done), so that a run stopped by SIGTERM or Ctrl-C, or one that fails, leaves the metrics of
// the steps it did; report_result replaces them with the whole run's at the end.
std::function<void(const fy::StepReport&)> progress_callback(common::Progress& progress,
                                                             double& last_val,
                                                             nlohmann::json& metrics) {
  metrics["losses"] = nlohmann::json::array();
  metrics["val_losses"] = nlohmann::json::array();
  return [&progress, &last_val, &metrics](const fy::StepReport& r) {
    metrics["losses"].push_back(r.loss);
    metrics["final_loss"] = r.loss;
    metrics["last_step"] = r.step;
    if (r.val_loss) {
      metrics["val_losses"].push_back({{"step", r.step}, {"loss", *r.val_loss}});
      metrics["final_val_loss"] = *r.val_loss;
    }
    if (r.val_loss) last_val = *r.val_loss;
    char val[32] = "";
    if (!std::isnan(last_val)) std::snprintf(val, sizeof val, "  val %.4f", last_val);
    char note[160];
    std::snprintf(note, sizeof note, "loss %.4f%s  %s tok/s  %.3g TFLOPS", r.loss, val,
                  format_si(r.tokens_per_s).c_str(), r.tflops);
    progress.set_note(note);
    progress.advance();
    if (r.val_loss) {
      common::log_debug("step ", r.step, ": loss ", r.loss, ", validation loss ", *r.val_loss);
    }
  };
}

// ---- Where the weights come from and go -----------------------------------------------------

fy::ModelConfig model_of(const FinetuneOptions& options) {
  return options.model_dir.empty() ? fy::model_config_from_name(options.model)
                                   : fy::model_config_from_hf(options.model_dir);
}

bool has_checkpoint(const std::string& dir) {
  return fs::is_regular_file(fs::path(dir) / "model.safetensors") ||
         fs::is_regular_file(fs::path(dir) / "model.safetensors.index.json");
}

// The GPT-2 safetensors file the run starts from: --init, or a GPT-2 --model-dir's; "" = none.
std::string gpt2_checkpoint(const FinetuneOptions& options, const fy::ModelConfig& config) {
  if (!options.init.empty()) return options.init;
  if (options.model_dir.empty() || config.llama() || !has_checkpoint(options.model_dir)) return "";
  const fs::path file = fs::path(options.model_dir) / "model.safetensors";
  if (!fs::is_regular_file(file)) {
    throw common::UsageError("model directory '" + options.model_dir +
                                 "' holds a sharded GPT-2 checkpoint, which is not read",
                             "save it as one model.safetensors (GPT-2 sizes fit one file)");
  }
  return file.string();
}

// The initial weights' checks (from the checkpoint's headers), before anything is made. A model
// directory without weights only plans (--dry-run) or resumes: its config.json alone describes it.
void check_initial_weights(const FinetuneOptions& options, const fy::ModelConfig& config,
                           bool dry_run) {
  if (options.resume) return;
  if (!options.model_dir.empty() && !has_checkpoint(options.model_dir)) {
    if (dry_run) return;
    throw common::UsageError("model directory '" + options.model_dir +
                                 "' has no weights (model.safetensors or "
                                 "model.safetensors.index.json)",
                             "save the model there with save_pretrained, or add --dry-run to plan");
  }
  if (config.llama() && !options.model_dir.empty()) {
    fy::check_hf_llama(config, options.model_dir);
    return;
  }
  const std::string file = gpt2_checkpoint(options, config);
  if (!file.empty()) fy::check_hf_gpt2(config, file);
}

// The initial weights one fp32 tensor at a time (ModelWeights::named() order): the checkpoint's,
// or a random init from `seed`.
void for_each_initial_weight(const FinetuneOptions& options, const fy::ModelConfig& config,
                             std::uint64_t seed, const fy::WeightVisitor& visit) {
  if (config.llama() && !options.model_dir.empty()) {
    fy::for_each_hf_llama_weight(config, options.model_dir, visit);
    return;
  }
  const std::string file = gpt2_checkpoint(options, config);
  if (file.empty()) {
    fy::for_each_init_weight(config, seed, visit);
  } else {
    fy::for_each_hf_gpt2_weight(config, file, visit);
  }
}

bool exports_one_file(const std::string& path) {
  const std::string suffix = ".safetensors";
  return path.size() >= suffix.size() &&
         path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// --export's path, checked before the run: one .safetensors file (GPT-2) or a model directory.
void check_export(const FinetuneOptions& options, const fy::ModelConfig& config) {
  if (options.export_path.empty()) return;
  if (exports_one_file(options.export_path)) {
    if (config.llama()) {
      throw common::UsageError("--export '" + options.export_path +
                                   "': a Llama-family model exports as a Hugging Face model "
                                   "directory, not one .safetensors file",
                               "pass --export DIR (config.json, shards and their index)");
    }
    const fs::path parent = fs::absolute(options.export_path).parent_path();
    if (!fs::is_directory(parent)) {
      throw common::UsageError("--export '" + options.export_path + "': directory '" +
                                   parent.string() + "' does not exist",
                               "create it first");
    }
    return;
  }
  if (!options.model_dir.empty() && fs::exists(options.export_path) &&
      fs::equivalent(options.export_path, options.model_dir)) {
    throw common::UsageError("--export is the --model-dir trained from",
                             "export to a new directory: the source stays as it was");
  }
  fy::check_hf_export_dir(options.export_path);
  if (common::parse_bytes(options.export_shard) == 0) {
    throw common::UsageError("--export-shard of 0 bytes", "pass e.g. --export-shard 5GB");
  }
}

void export_weights(const FinetuneOptions& options, const fy::ModelConfig& config,
                    const fy::ModelWeights& weights, const std::string& produced_by) {
  const bool one_file = exports_one_file(options.export_path);
  const std::string dtype = options.export_dtype != "auto" ? options.export_dtype
                            : one_file                     ? "fp32"
                                                           : "bf16";
  const at::ScalarType type = dtype == "bf16"   ? at::kBFloat16
                              : dtype == "fp16" ? at::kHalf
                                                : at::kFloat;
  const std::map<std::string, std::string> metadata = {{"model", config.name},
                                                       {"produced_by", produced_by}};
  if (one_file) {
    fy::export_hf_gpt2(options.export_path, weights, type, metadata);
  } else {
    fy::HfExportOptions o;
    o.dtype = type;
    o.shard_bytes = common::parse_bytes(options.export_shard);
    o.source_dir = options.model_dir;
    o.metadata = metadata;
    fy::export_hf_model_dir(options.export_path, config, weights, o);
  }
  common::log_info("wrote ", options.export_path, " (", dtype, ")");
}

// Each rank's --ssd directories (fy::rank_path): made when their parent exists.
void make_rank_dirs(const std::vector<std::string>& dirs) {
  for (const std::string& dir : dirs) {
    std::error_code ec;
    if (fs::exists(dir) || !fs::is_directory(fs::path(dir).parent_path())) continue;
    if (!fs::create_directory(dir, ec) && ec) {
      common::throw_path_error("cannot create this rank's store directory", dir, ec.value(),
                               "pass --ssd writable directories");
    }
  }
}

// A rank's store remembers the world it belongs to (kStoredWorldName beside the store in its first
// --ssd directory); a store without it belongs to one process.
constexpr const char* kStoredWorldName = "sparsetrain-ranks.json";

void write_stored_world(const std::string& dir, const fy::World& world) {
  common::AtomicFile file(dir + "/" + kStoredWorldName);
  file.write(nlohmann::json{{"world_size", world.size}, {"rank", world.rank}}.dump() + "\n");
  file.commit();
}

// --resume across ranks: every rank's store was made by a run of this world size (checked on
// every rank alike, so that all of them stop together when one store differs).
void check_stored_world(const std::string& dir, const JoinedRanks& ranks) {
  int stored = 1;
  try {
    std::ifstream in(dir + "/" + kStoredWorldName);
    if (in) stored = nlohmann::json::parse(in).at("world_size").get<int>();
  } catch (const std::exception&) {
    stored = -1;  // unreadable: no rank resumes
  }
  ranks.group->check_same("stored world size (" + std::string(kStoredWorldName) + ")",
                          std::to_string(stored));
  if (stored != ranks.world.size) {
    throw common::UsageError(
        "--resume with " + std::to_string(ranks.world.size) + " ranks: the stored run has " +
            (stored < 0 ? std::string("an unreadable ") + kStoredWorldName
                        : std::to_string(stored) + " rank" + (stored == 1 ? "" : "s")),
        "resume with the world size the run was started with");
  }
}

void run_offloaded(const FinetuneOptions& options, const fy::ModelConfig& config,
                   const fy::TokenData& train_data, const fy::TokenData& valid_data,
                   const JoinedRanks& ranks, CommandContext& context) {
  nlohmann::json& metrics = context.record.metrics();
  const bool cuda = options.train.device == fy::TrainDevice::kCuda;
  fy::OffloadOptions offload = offload_options_of(options, config);
  offload.ranks = ranks.group;
  // A run that cannot fit is refused before the rate probes, which run one block of the model
  // (a 175B block alone is 7 GiB of fp32 weights). The rates change the bound, not the fit.
  fy::plan_offload_run(config, options.train, offload);
  // --device cuda --dry-run without a GPU: plan with the reference GPU machine's rates.
  const bool reference_rates = cuda && !torch::cuda::is_available();
  if (reference_rates) {
    common::log_warn(
        "no CUDA device here: planning only, the bound uses the H200 machine's "
        "measured rates (bench/results/fuyou_h200), not this machine's");
  }
  {
    auto t = context.record.timings().scope("measure_rates");
    // An assumed compute rate replaces the probes (one block of the model: minutes and GiBs for
    // the largest, on a machine that may not be the one planned for).
    const bool probe = !reference_rates && options.assume_tflops <= 0;
    offload.rates = !probe ? (cuda ? fy::reference_cuda_rates() : fy::OffloadRates{})
                    : cuda ? fy::measure_cuda_rates(config, options.train)
                           : fy::measure_cpu_rates(config, options.train);
    // A dry run only plans: it writes nothing to the --ssd directories.
    if (!context.global.dry_run) offload.rates = fy::measure_ssd_rates(options.ssd, offload.rates);
    offload.rates = with_assumptions(offload.rates, options, offload);
  }
  const fy::OffloadPlan plan = fy::plan_offload_run(config, options.train, offload);
  metrics["device"] = cuda ? "cuda" : "cpu";
  metrics["precision"] =
      cuda ? "bf16 compute on the GPU, fp32 master and Adam state in the store / CPU" : "fp32";
  metrics["offload"] = plan;
  metrics["offload"]["grad_clip_mode"] = options.train.grad_clip > 0
                                             ? "deferred: updates wait for the global norm (exact)"
                                             : "overlapped with backward";
  nlohmann::json bound = fy::offload_bound_json(plan);
  bound["rates"] = offload.rates;
  std::string source = reference_rates ? "no CUDA device here: the H200 machine's measured rates "
                                         "(offload_rates.h: reference_cuda_rates)"
                       : context.global.dry_run
                           ? "compute, cpu_adam, pcie, stream_convert measured now; ssd from "
                             "DESIGN.md (a dry run writes no probe)"
                           : "all measured now (offload_rates.h)";
  if (options.assumes()) {
    source +=
        "; assumed instead:" +
        std::string(options.assume_ssd.empty() ? "" : " --assume-ssd " + options.assume_ssd) +
        (options.assume_pcie.empty() ? "" : " --assume-pcie " + options.assume_pcie) +
        (options.assume_tflops > 0 ? " --assume-tflops " + format_si(options.assume_tflops) : "");
    if (options.assume_tflops > 0 && !reference_rates) {
      source += cuda ? " (no probe ran: the other rates are the H200 machine's)"
                     : " (no probe ran: the other rates are DESIGN.md's development machine's)";
    }
  }
  bound["rates"]["source"] = source;
  if (options.assume_tflops <= 0) {
    bound["rates"]["compute_probe"] =
        "one transformer block's forward + recompute backward at the run's [B, T, C] (median "
        "of at least 5 passes), 6*P_block + 12*C*T + 16*C^2 + 4*C*T FLOP per token";
  }
  context.record.run_extra()["offload_bound"] = bound;
  if (context.global.dry_run) {
    fy::OffloadShape shape = fy::offload_shape_of(options.train, offload);
    constexpr std::int64_t kLargestChecked = 4096;
    const std::int64_t largest = fy::largest_micro_batch(
        config, shape, fy::offload_budgets_of(offload), offload.rates, kLargestChecked);
    const bool bounded = largest < kLargestChecked;
    metrics["offload"]["largest_micro_batch"] = largest;
    metrics["offload"]["largest_micro_batch_bounded"] = bounded;
    const std::string where = offload.assumed_ssds
                                  ? std::to_string(offload.assumed_ssds->count) + " assumed SSD" +
                                        (offload.assumed_ssds->count == 1 ? "" : "s") + " (" +
                                        options.assume_ssd + ")"
                                  : std::to_string(options.ssd.size()) + " director" +
                                        (options.ssd.size() == 1 ? "y" : "ies");
    std::cout << "would fine-tune " << config.name << " (" << with_commas(config.param_count())
              << " parameters) offloaded to " << where << " for " << options.train.steps << " steps"
              << (options.resume ? " (resuming)" : "") << "\n"
              << plan.describe() << "largest micro-batch that fits these budgets: "
              << (bounded ? std::to_string(largest)
                          : "at least " + std::to_string(largest) + " (not bounded by them)")
              << " (at --seq " << options.train.seq << ", --accum " << options.train.accum << ")\n";
    return;
  }
  if (options.train.grad_clip > 0) {
    common::log_info("fuyou finetune: --grad-clip ", options.train.grad_clip,
                     " defers each step's updates until the global norm is known (exact); "
                     "--grad-clip 0 overlaps them with the backward");
  }
  std::unique_ptr<fy::OffloadTrainer> trainer;
  {
    // The initial weights (a random init, or the --init checkpoint read tensor by tensor) go into
    // the store one tensor at a time: the model need not fit in RAM. Never visited on --resume.
    auto t = context.record.timings().scope("store_init");
    const std::uint64_t seed = context.global.seed;
    const fy::WeightSource initial = [&config, &options, seed](const fy::WeightVisitor& visit) {
      for_each_initial_weight(options, config, seed, visit);
    };
    if (ranks.group && options.resume) check_stored_world(options.ssd[0], ranks);
    trainer = std::make_unique<fy::OffloadTrainer>(config, initial, options.train, offload);
    if (ranks.group && !options.resume) write_stored_world(options.ssd[0], ranks.world);
    if (ranks.group && options.resume) {
      // The ranks commit each step one after another: a rank killed between them leaves the
      // others one commit ahead of it. Those fall back to their previous commit (whose data no
      // rank can have overwritten: the next step's writes need every rank's gradients).
      std::int64_t first = trainer->first_step();
      for (const std::string& step : ranks.group->exchange("resumed step", std::to_string(first)))
        first = std::min<std::int64_t>(first, std::stoll(step));
      if (trainer->first_step() == first + 1) {
        common::log_info("fuyou finetune: rank ", ranks.world.rank,
                         " falls back to its previous commit (step ", first - 1,
                         "), where the other ranks stopped");
        trainer.reset();
        offload.resume_previous_commit = true;
        trainer = std::make_unique<fy::OffloadTrainer>(config, initial, options.train, offload);
      }
      ranks.group->check_same("resumed step (the step after each rank's last commit)",
                              std::to_string(trainer->first_step()),
                              "the ranks' stores are more than one commit apart (or one fell "
                              "back and another could not): start the run anew");
    }
  }
  common::Progress progress("finetune", static_cast<std::uint64_t>(options.train.steps), "steps",
                            /*interval_s=*/10.0);
  // A step a crash interrupted mid-update in place is finished already and reported first.
  const std::optional<std::int64_t> rolled = trainer->rolled_forward_step();
  if (rolled) {
    common::log_info("fuyou finetune: --resume finished step ", *rolled,
                     ", which the stopped run had sealed and was updating in place");
  }
  progress.advance(static_cast<std::uint64_t>(trainer->first_step() - 1 - (rolled ? 1 : 0)));
  metrics["first_step"] = trainer->first_step();
  double last_val = NAN;
  const fy::TrainResult result = trainer->train(
      train_data, valid_data, progress_callback(progress, last_val, context.record.metrics()));
  progress.finish();
  report_result(result, config, options, context);
  if (rolled) metrics["rolled_forward_step"] = *rolled;
  const fy::OffloadStats& stats = trainer->stats();
  nlohmann::json measured = stats;
  measured["measured_over_bound"] =
      plan.bound_seconds > 0 ? stats.step_seconds / plan.bound_seconds : 0;
  measured["binding"] = plan.binding;
  measured["per_step"] = per_step_json(plan, stats);
  context.record.run_extra()["offload_measured"] = measured;
  common::log_info("fuyou finetune (offloaded): ", stats.steps, " steps, ", stats.step_seconds,
                   " s/step against a bound of ", plan.bound_seconds, " s (", plan.binding,
                   "): ratio ",
                   plan.bound_seconds > 0 ? stats.step_seconds / plan.bound_seconds : 0,
                   "; store read ", common::format_bytes(static_cast<double>(stats.ssd_read_bytes)),
                   ", written ", common::format_bytes(static_cast<double>(stats.ssd_write_bytes)));
  if (!options.export_path.empty() && ranks.world.rank == 0) {  // every rank has the same weights
    auto t = context.record.timings().scope("export");
    // The fp32 master weights as committed (the compute weights may be bf16 or streamed).
    export_weights(options, config, trainer->read_master(), "sparsetrain fuyou finetune --ssd");
  }
}

void run_rank(FinetuneOptions options, const JoinedRanks& ranks, CommandContext& context);

void run_finetune(FinetuneOptions options, CommandContext& context) {
  if (spawns_local_ranks(options.ranks)) {
    run_local_ranks(options.ranks, context);
    return;
  }
  // A dry run plans this rank without meeting the others.
  const JoinedRanks ranks = context.global.dry_run ? JoinedRanks{fy::world_from_env(), nullptr}
                                                   : join_ranks(options.ranks, context);
  run_rank(std::move(options), ranks, context);
  merge_rank_records(ranks, context);
}

void run_rank(FinetuneOptions options, const JoinedRanks& ranks, CommandContext& context) {
  nlohmann::json& metrics = context.record.metrics();
  options.train.ranks = ranks.world.size;
  options.train.rank = ranks.world.rank;
  for (std::string& dir : options.ssd) dir = fy::rank_path(dir, ranks.world);
  const fy::ModelConfig config = model_of(options);
  check_export(options, config);
  check_initial_weights(options, config, context.global.dry_run);
  if (!options.model_dir.empty()) {
    common::log_info("fuyou finetune: model ", config.name, " (",
                     fy::model_family_name(config.family), ") from ", options.model_dir,
                     has_checkpoint(options.model_dir) ? " with its weights" : " (config only)");
  }
  options.train.seed = context.global.seed;
  options.train.device = resolve_device(options.device, context.global.dry_run);
  const bool cuda = options.train.device == fy::TrainDevice::kCuda;
  if (cuda && ranks.world.distributed()) {
    throw common::EnvironmentError("--device cuda with " + std::to_string(ranks.world.size) +
                                       " ranks: several ranks on CUDA need NCCL, which this build "
                                       "has no process group for yet",
                                   "run the ranks with --device cpu, or one process on the GPU");
  }
  if (ranks.world.distributed() && !context.global.dry_run) make_rank_dirs(options.ssd);
  if (!(options.valid_fraction > 0 && options.valid_fraction < 1)) {
    throw common::UsageError("--valid-fraction must lie in (0, 1)", "try --valid-fraction 0.1");
  }

  std::string source;
  auto load_scope = std::make_unique<common::PhaseTimes::Scope>(context.record.timings(), "load");
  const fy::TokenData all = load_tokens(options, source);
  if (all.vocab_needed() > config.vocab) {
    throw common::UsageError(
        "data '" + source + "' has token ids up to " + std::to_string(all.vocab_needed() - 1) +
            " but model '" + config.name + "' has a vocabulary of " + std::to_string(config.vocab),
        "prepare the data with the model's own tokenizer (scripts/prepare_tokens.py "
        "--tokenizer DIR/tokenizer.json), or pick a model with vocab 50257 (gpt2, gpt3-*) for "
        "GPT-2 tokens");
  }
  const auto [train_data, valid_data] = all.split(options.valid_fraction);
  load_scope.reset();
  const std::int64_t window = options.train.seq + 1;
  if (train_data.size() < window || valid_data.size() < window) {
    throw common::UsageError("data '" + source +
                                 "' is too short: " + std::to_string(train_data.size()) +
                                 " training and " + std::to_string(valid_data.size()) +
                                 " validation tokens for windows of " + std::to_string(window),
                             "lower --seq or pass more data");
  }

  const std::int64_t tokens_per_step =
      options.train.micro_batch * options.train.seq * fy::step_micro_batches(options.train);
  common::log_info("fuyou finetune: model ", config.name, " (",
                   format_si(static_cast<double>(config.param_count())), " parameters), ",
                   cuda ? "CUDA bf16" : "CPU fp32", ", ", options.train.steps, " steps of ",
                   tokens_per_step, " tokens, data ", source, ": ", train_data.size(), " train / ",
                   valid_data.size(), " validation tokens");
  metrics["model"] = model_json(config);
  metrics["device"] = cuda ? "cuda" : "cpu";
  metrics["precision"] = cuda ? "bf16 compute, fp32 master and Adam state on the CPU" : "fp32";
  metrics["data"] = {{"source", source},
                     {"train_tokens", train_data.size()},
                     {"valid_tokens", valid_data.size()},
                     {"loss_mask", all.has_loss_mask()},
                     {"trained_tokens", all.trained_tokens()}};
  metrics["tokens_per_step"] = tokens_per_step;
  if (options.assumes() && !context.global.dry_run) {
    throw common::UsageError(
        "--assume-ssd, --assume-pcie and --assume-tflops plan hardware that "
        "is not here: they need --dry-run",
        "add --dry-run, or drop them to train on this machine");
  }
  if (!options.ssd.empty() || !options.assume_ssd.empty()) {
    run_offloaded(options, config, train_data, valid_data, ranks, context);
    return;
  }
  if (options.resume || !options.cpu_mem.empty() || !options.gpu_mem.empty() ||
      options.commit_every != 1 || !options.state_piece.empty() || options.stream != "auto" ||
      options.store_slots != "auto" || options.activations != "auto" ||
      options.activations_in != "auto" || options.assumes()) {
    throw common::UsageError(
        "--resume, --cpu-mem, --gpu-mem, --commit-every, --state-piece, --stream, --store-slots, "
        "--activations, --activations-in and --assume-* apply to offloaded runs only",
        "add --ssd DIR to offload, or drop them to train in memory");
  }
  if (context.global.dry_run) {
    std::cout << "would fine-tune " << config.name << " (" << with_commas(config.param_count())
              << " parameters) on " << (cuda ? "CUDA (bf16)" : "CPU (fp32)") << " for "
              << options.train.steps << " steps of " << tokens_per_step << " tokens; data "
              << source << "\n";
    return;
  }

  fy::ModelWeights weights;
  {
    auto t = context.record.timings().scope("init");
    weights = fy::collect_weights(config, [&](const fy::WeightVisitor& visit) {
      for_each_initial_weight(options, config, context.global.seed, visit);
    });
  }
  fy::InMemoryTrainer trainer(config, std::move(weights), options.train, ranks.group);

  common::Progress progress("finetune", static_cast<std::uint64_t>(options.train.steps), "steps",
                            /*interval_s=*/10.0);
  double last_val = NAN;  // shown from the first evaluation on
  const fy::TrainResult result = trainer.train(
      train_data, valid_data, progress_callback(progress, last_val, context.record.metrics()));
  progress.finish();
  report_result(result, config, options, context);
  common::log_info("fuyou finetune: loss ", result.losses.front(), " -> ", result.losses.back(),
                   ", validation ", result.val_losses.front().second, " -> ",
                   result.val_losses.back().second, "; ", format_si(result.tokens_per_s),
                   " tokens/s, ", result.tflops, " TFLOPS (6N + 12LCT)");

  if (!options.export_path.empty() && ranks.world.rank == 0) {  // every rank has the same weights
    auto t = context.record.timings().scope("export");
    export_weights(options, config, trainer.master(), "sparsetrain fuyou finetune");
  }
}

void add_finetune_command(CLI::App& fuyou) {
  auto options = std::make_shared<FinetuneOptions>();
  fy::TrainOptions& t = options->train;
  CLI::App* sub = fuyou.add_subcommand(
      "finetune", "Fine-tune a GPT in memory (CPU fp32 or CUDA bf16) on tokens or built-in text");
  const std::string kModel = "Model and data";
  CLI::Option* model =
      sub->add_option("--model", options->model,
                      "Preset (tiny, small, gpt2, gpt3-125m … gpt3-175b, llama3.2-1b … "
                      "llama3.1-405b, mistral-7b-v0.3, qwen2.5-7b, qwen2.5-72b; random init) or "
                      "custom:L=..,C=..,H=..[,V=..][,T=..] (GPT-2 blocks)")
          ->group(kModel);
  CLI::Option* init = sub->add_option("--init", options->init,
                                      "Start from this Hugging Face GPT-2 safetensors file")
                          ->check(CLI::ExistingFile)
                          ->group(kModel);
  sub->add_option("--model-dir", options->model_dir,
                  "A Hugging Face model directory (LlamaForCausalLM, MistralForCausalLM, "
                  "Qwen2ForCausalLM, GPT2LMHeadModel): its config.json, and its weights "
                  "(model.safetensors or shards with their index) to start from; config.json alone "
                  "plans with --dry-run")
      ->check(CLI::ExistingDirectory)
      ->excludes(model)
      ->excludes(init)
      ->group(kModel);
  sub->add_option("--data", options->data,
                  "llm.c .bin token file (GPT-2 uint16 or Llama 3 uint32; "
                  "scripts/prepare_tokens.py writes them from a tokenizer.json) or a text file "
                  "(bytes); default: built-in text")
      ->check(CLI::ExistingFile)
      ->group(kModel);
  sub->add_option("--loss-mask", options->loss_mask,
                  "Loss mask for --data (one byte per token, 0 = not trained on, e.g. prompts): "
                  "a file, or none; default: the .mask file beside the .bin, if there is one")
      ->group(kModel);
  sub->add_option("--valid-fraction", options->valid_fraction,
                  "Tail of the data held out for validation")
      ->group(kModel);
  sub->add_option("--device", options->device, "Where to compute")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->group(kModel);
  const std::string kTrain = "Training";
  sub->add_option("--steps", t.steps, "Optimizer steps")->group(kTrain);
  sub->add_option("--micro-batch", t.micro_batch, "Sequences per forward/backward (B)")
      ->group(kTrain);
  sub->add_option("--seq", t.seq, "Tokens per sequence (T)")->group(kTrain);
  sub->add_option("--accum", t.accum, "Micro-batches per optimizer step (K)")->group(kTrain);
  sub->add_option("--lr", t.lr, "Peak learning rate")->group(kTrain);
  sub->add_option("--warmup", t.warmup, "Linear warm-up steps, then cosine decay")->group(kTrain);
  sub->add_option("--min-lr-ratio", t.min_lr_ratio, "Final learning rate as a fraction of --lr")
      ->group(kTrain);
  sub->add_option("--weight-decay", t.adam.weight_decay,
                  "AdamW decoupled weight decay (matrices and embeddings)")
      ->group(kTrain);
  sub->add_option("--beta1", t.adam.beta1, "AdamW beta1")->group(kTrain);
  sub->add_option("--beta2", t.adam.beta2, "AdamW beta2")->group(kTrain);
  sub->add_option("--grad-clip", t.grad_clip, "Clip the global gradient norm (0 = off)")
      ->group(kTrain);
  sub->add_option("--eval-every", t.eval_every, "Validation every N steps (0 = only at the end)")
      ->group(kTrain);
  sub->add_option("--eval-batches", t.eval_batches, "Micro-batches per validation")->group(kTrain);
  sub->add_option("--loss-chunk", t.loss_chunk_rows, "Rows of B·T per logits chunk (0 = ≤ 64 MiB)")
      ->group(kTrain);
  const std::string kOffload = "Offload (Fuyou)";
  sub->add_option("--ssd", options->ssd,
                  "Offload: the SSD tensor store's directories (comma-separated, striped); master "
                  "weights and Adam states live there")
      ->delimiter(',')
      ->group(kOffload);
  sub->add_option("--cpu-mem", options->cpu_mem,
                  "Offload: CPU budget for optimizer states and staging (e.g. 8GiB); states stay "
                  "in RAM when they fit")
      ->group(kOffload);
  sub->add_option("--gpu-mem", options->gpu_mem,
                  "Offload: compute-tier budget (GPU memory; CPU memory without a GPU); when the "
                  "blocks' weights do not fit, they stream through a few slots from their master "
                  "copy (CUDA: bf16 via pinned memory) — whole blocks, or their pieces when two "
                  "whole blocks do not fit (--stream) — and block inputs leave it (CPU tier: to "
                  "the store; CUDA: to pinned memory) when even that does not fit; default no "
                  "limit")
      ->group(kOffload);
  sub->add_flag("--resume", options->resume,
                "Offload: continue the run committed in the --ssd store (same flags)")
      ->group(kOffload);
  sub->add_option("--commit-every", options->commit_every,
                  "Offload: when the states fit in --cpu-mem, write them to the store and commit "
                  "every N steps (a kill loses at most N-1 steps); states in the store are "
                  "committed every step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str()
      ->group(kOffload);
  sub->add_option("--state-piece", options->state_piece,
                  "Offload: the optimizer reads, updates and writes the states in pieces of at "
                  "most this much of each of master, m, v (default 64MiB; rounded down to a "
                  "multiple of 4MiB, at least 4MiB, so that pieces fill whole store extents); "
                  "with the states in the store --cpu-mem holds two pieces, 6 x SIZE. Fixed "
                  "for a store: --resume checks it")
      ->group(kOffload);
  sub->add_option("--stream", options->stream,
                  "Offload: how streamed blocks travel: block (whole), or piece (one matmul "
                  "each: the compute tier holds a piece per slot, each block loads almost three "
                  "times a micro-batch instead of twice; the CPU tier only, for now); auto picks "
                  "whole blocks wherever two of them fit --gpu-mem")
      ->check(CLI::IsMember({"auto", "block", "piece"}))
      ->capture_default_str()
      ->group(kOffload);
  sub->add_option("--store-slots", options->store_slots,
                  "Offload: store slots per extent: 2 (copy-on-write, 24 B per parameter: a "
                  "crash falls back to the last commit) or 1 (updates in place, 12 B per "
                  "parameter plus a spare state piece per unit and the step's gradients, 4 B per "
                  "parameter: each step's gradients are sealed in the store first, a crash "
                  "mid-update is finished by --resume); auto picks 2 where they fit the SSDs, "
                  "else 1 where it is smaller and fits; a store keeps its slots")
      ->check(CLI::IsMember({"auto", "1", "2"}))
      ->capture_default_str()
      ->group(kOffload);
  sub->add_option("--activations", options->activations,
                  "Offload: what each block's forward keeps for its backward instead of "
                  "recomputing it: auto (the cost model keeps, block by block, what most shortens "
                  "the predicted step: --dry-run says what and why), recompute (only the block "
                  "inputs), keep-all, a list of ln1,qkv,attn,resid,ln2,fc,gelu for every block, "
                  "or per block as '0-11:attn,fc;12:all'")
      ->capture_default_str()
      ->group(kOffload);
  sub->add_option("--activations-in", options->activations_in,
                  "Offload: where kept activations wait: auto (the compute tier while --gpu-mem "
                  "has room, then --cpu-mem (CUDA: pinned, over PCIe), then the store (CUDA: "
                  "through two pinned staging buffers)), or all in compute, cpu or store")
      ->check(CLI::IsMember({"auto", "compute", "cpu", "store"}))
      ->capture_default_str()
      ->group(kOffload);
  const std::string kAssume = "Planning for other hardware (--dry-run only)";
  sub->add_option("--assume-ssd", options->assume_ssd,
                  "Plan on SSDs that are not here instead of --ssd: COUNTxSIZE@READ[,WRITE] per "
                  "disk, e.g. 12x4TB@2GB/s")
      ->group(kAssume);
  sub->add_option("--assume-pcie", options->assume_pcie,
                  "Plan with these PCIe rates, host to device [, device to host], e.g. 25GB/s")
      ->group(kAssume);
  sub->add_option("--assume-tflops", options->assume_tflops,
                  "Plan with this compute rate (TFLOP/s of the block forward + backward)")
      ->check(CLI::PositiveNumber)
      ->group(kAssume);
  const std::string kOutput = "Output";
  sub->add_option("--export", options->export_path,
                  "Write the trained weights: a DIR becomes a Hugging Face model directory "
                  "(config.json, safetensors shards and their index, --model-dir's tokenizer "
                  "files) that transformers' from_pretrained loads; a FILE.safetensors, GPT-2's "
                  "weights alone")
      ->group(kOutput);
  sub->add_option("--export-dtype", options->export_dtype,
                  "Precision of --export: auto (bf16 for a directory, fp32 for a file)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16", "fp16"}))
      ->capture_default_str()
      ->group(kOutput);
  sub->add_option("--export-shard", options->export_shard,
                  "Largest safetensors shard of an exported directory")
      ->capture_default_str()
      ->group(kOutput);
  sub->footer(
      "The loss is the mean next-token cross-entropy (nats); the built-in text starts near\n"
      "log(256) = 5.545. TFLOPS count 6·N + 12·L·C·T FLOPs per token (model FLOPs).\n\n"
      "Examples:\n"
      "  sparsetrain fuyou finetune --model small --steps 300 --out run.json\n"
      "  sparsetrain fuyou finetune --model small --ssd /mnt/a,/mnt/b --cpu-mem 6MiB --grad-clip 0 "
      "--steps 100 --out offload.json\n"
      "  sparsetrain fuyou finetune --model gpt2 --init gpt2.safetensors --data train.bin "
      "--seq 1024 --micro-batch 4 --accum 8 --lr 6e-5 --export tuned.safetensors\n"
      "  sparsetrain fuyou finetune --model-dir Llama-3.2-1B --data chat.bin --ssd /mnt/a "
      "--cpu-mem 8GiB --device cuda --gpu-mem 20GiB --export tuned/\n"
      "  sparsetrain fuyou finetune --model gpt3-175b --device cuda --gpu-mem 24GiB --cpu-mem "
      "64GiB --seq 2048 --micro-batch 1 --assume-ssd 12x4TB@2GB/s --dry-run");
  add_rank_flags(*sub, options->ranks);
  set_command_runner(sub, [options](CommandContext& context) { run_finetune(*options, context); });
}

}  // namespace

void add_fuyou_commands(CLI::App& app) {
  CLI::App* fuyou =
      app.add_subcommand("fuyou", "Fine-tune models larger than GPU and CPU memory from SSDs");
  fuyou->configurable();
  add_describe_command(*fuyou);
  add_finetune_command(*fuyou);
  add_fuyou_io_commands(*fuyou);
}

}  // namespace sparsetrain::cli
