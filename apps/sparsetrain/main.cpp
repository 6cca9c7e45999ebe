// sparsetrain: graph lottery tickets (TEDDY) and SSD-offloaded fine-tuning (Fuyou) in one tool.
// This file only wires the command line: global flags, --config, --version, the exit-code policy
// of STYLE.md, SIGINT handling and the run record. Commands live in *_command.cpp.
#include <c10/util/Exception.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <new>
#include <sstream>

#include "cli.h"
#include "common/error.h"
#include "common/fault_injection.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/run/build_info.h"
#include "common/run/system_info.h"

namespace st = sparsetrain;
using st::common::ExitCode;

namespace {

const char* const kProgram = "sparsetrain";

std::string version_text() {
  const auto& b = st::common::build_info();
  std::ostringstream out;
  out << kProgram << " " << b.version << " (commit " << b.git_commit << ", " << b.build_type
      << (b.sanitize[0] ? std::string(", sanitize=") + b.sanitize : std::string()) << ")\n"
      << "torch " << b.torch_version << "\n"
      << "CUDA " << st::common::cuda_summary(st::common::cuda_info()) << "\n"
      << "liburing " << b.liburing_version;
  return out.str();
}

int print_error(ExitCode code, const std::string& message, const std::string& hint) {
  std::cerr << kProgram << ": error: " << message << "\n";
  if (!hint.empty()) std::cerr << "  hint: " << hint << "\n";
  return static_cast<int>(code);
}

void on_signal(int) {
  if (st::common::interrupt_requested()) std::_Exit(static_cast<int>(ExitCode::kInterrupted));
  st::common::request_interrupt();  // a second Ctrl-C kills at once
}

// "1e-3" -> number, "true" -> bool, else string: keeps the record's config typed.
nlohmann::json typed_value(const std::string& text) {
  if (text == "true") return true;
  if (text == "false") return false;
  if (!text.empty()) {
    char* end = nullptr;
    const long long as_int = std::strtoll(text.c_str(), &end, 10);
    if (*end == '\0') return as_int;
    const double as_double = std::strtod(text.c_str(), &end);
    if (*end == '\0') return as_double;
  }
  return text;
}

// Resolved value of every configurable option of `app` and its option groups (unnamed subcommands).
void collect_config(const CLI::App* app, nlohmann::json& config, nlohmann::json& plumbing) {
  for (const CLI::Option* opt : app->get_options()) {
    const std::string& name = opt->get_single_name();
    if (name.empty() || name == "help" || name == "version") continue;
    nlohmann::json value;
    if (opt->get_expected_min() == 0) {
      value = opt->count() > 0 && opt->as<bool>();
    } else if (opt->count() > 0) {
      const auto& results = opt->results();
      if (opt->get_expected_max() > 1) {
        value = nlohmann::json::array();
        for (const auto& r : results) value.push_back(typed_value(r));
      } else {
        value = typed_value(results.back());
      }
    } else if (opt->get_expected_max() > 1) {
      // vector defaults are captured as "[a,b]"
      std::string text = opt->get_default_str();
      if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
        text = text.substr(1, text.size() - 2);
      value = nlohmann::json::array();
      std::stringstream items(text);
      for (std::string item; std::getline(items, item, ',');) value.push_back(typed_value(item));
    } else {
      value = typed_value(opt->get_default_str());
    }
    (st::cli::is_plumbing_option(name) ? plumbing : config)[name] = std::move(value);
  }
  for (const CLI::App* group : app->get_subcommands({})) {
    if (group->get_name().empty()) collect_config(group, config, plumbing);
  }
}

}  // namespace

// LibTorch's own warnings (e.g. "Sparse CSR tensor support is in beta state", printed by c10 to
// stderr as [W… file:line]) go through our log at debug level instead: they speak of torch's
// internals, not of anything the user can act on.
class TorchWarningsToLog final : public c10::WarningHandler {
 public:
  void process(const c10::Warning& warning) override {
    st::common::log_debug("torch: ", warning.msg());
  }
};

int main(int argc, char** argv) {
  // First: a SIGTERM or Ctrl-C from here on ends the run through its record (exit 130).
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  static TorchWarningsToLog torch_warnings;
  c10::WarningUtils::set_warning_handler(&torch_warnings);
  CLI::App app{
      "sparsetrain: graph lottery tickets for GNNs (TEDDY) and fine-tuning of models larger "
      "than GPU and CPU memory from SSDs (Fuyou).",
      kProgram};
  app.option_defaults()->always_capture_default();
  app.set_version_flag("--version", version_text,
                       "Print version, commit, torch, CUDA and liburing");
  app.set_config("--config", "", "TOML file of options; flags on the command line win");
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.fallthrough();  // global flags may follow the subcommand
  app.require_subcommand(1);

  st::cli::GlobalOptions global;
  const std::string kGlobal = "Global options";
  app.add_option("--seed", global.seed, "Seed for every random choice")->group(kGlobal);
  app.add_option("--out", global.out, "Write the run record (JSON) here; '-' = stdout")
      ->group(kGlobal);
  app.add_option("--jsonl", global.jsonl, "Stream log and progress events (JSON Lines) here")
      ->group(kGlobal);
  app.add_option("--log-level", global.log_level, "Log threshold on stderr")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}))
      ->group(kGlobal);
  app.add_option("--progress", global.progress, "Progress bar: on a TTY (auto), always, or never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->group(kGlobal);
  app.add_flag("--dry-run", global.dry_run, "Validate inputs and print the plan; do no work")
      ->group(kGlobal);
  app.footer(
      "Exit codes: 0 ok, 1 run failed, 2 usage or config error (nothing run), 3 environment\n"
      "unavailable (CUDA, io_uring, O_DIRECT), 70 internal bug, 130 interrupted.\n\n"
      "Examples:\n"
      "  sparsetrain data fetch cora\n"
      "  sparsetrain teddy prune --graph data/cora --levels paper --out-graph cora-levels "
      "--out prune.json\n"
      "  sparsetrain fuyou finetune --model small --steps 400 --out finetune.json\n"
      "  sparsetrain env --dir /mnt/nvme --out env.json");

  st::cli::add_env_command(app);
  st::cli::add_data_commands(app);
  st::cli::add_graph_commands(app);
  st::cli::add_teddy_commands(app);
  st::cli::add_fuyou_commands(app);

  st::cli::refuse_empty_values(app);

  std::vector<std::string> args(argv, argv + argc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const st::cli::ParseErrorText text = st::cli::describe_parse_error(e, args);
    return print_error(ExitCode::kUsage, text.message, text.hint);
  }

  // The deepest subcommand chosen is the command to run: "teddy prune", "env", ...
  const CLI::App* command = &app;
  std::string command_path;
  while (!command->get_subcommands().empty()) {
    command = command->get_subcommands().front();
    command_path += (command_path.empty() ? "" : " ") + command->get_name();
  }
  const st::cli::CommandFn* run = st::cli::find_command_runner(command);
  if (run == nullptr) {
    return print_error(ExitCode::kUsage, "'" + command_path + "' needs a subcommand",
                       "see '" + std::string(kProgram) + " " + command_path + " --help'");
  }

  st::common::RunRecord record(command_path, args);
  nlohmann::json plumbing = nlohmann::json::object();
  for (const CLI::App* a = command; a != nullptr; a = a->get_parent()) {
    collect_config(a, record.config(), plumbing);
  }
  record.run_extra()["output"] = plumbing;

  ExitCode code = ExitCode::kOk;
  std::string record_path = global.out;
  try {
    st::common::set_log_level(st::common::parse_log_level(global.log_level));
    st::common::set_progress_mode(st::common::parse_progress_mode(global.progress));
    st::common::open_event_stream(global.jsonl);
    st::common::arm_io_fault_from_env();  // SPARSETRAIN_IO_FAULT, for the fault tests
    st::cli::CommandContext context{global, record, record_path};
    (*run)(context);
    record.set_ok();
  } catch (const st::common::Error& e) {
    code = e.code();
    record.set_failed(e);
    print_error(code, e.what(), e.hint());
  } catch (const c10::Error& e) {
    // TORCH_CHECK failures: a caller error surfaced by LibTorch; keep its first line.
    std::string message = e.what_without_backtrace();
    message = message.substr(0, message.find('\n'));
    code = ExitCode::kRunFailed;
    record.set_failed(code, "torch: " + message, "");
    print_error(code, "torch: " + message, "");
  } catch (const std::bad_alloc&) {
    code = ExitCode::kRunFailed;
    const std::string hint = "reduce the problem size or memory budget";
    record.set_failed(code, "out of memory", hint);
    print_error(code, "out of memory", hint);
  } catch (const std::exception& e) {
    code = ExitCode::kInternal;
    const std::string hint = "this is a bug in sparsetrain; please report it with the command line";
    record.set_failed(code, e.what(), hint);
    print_error(code, std::string("unexpected: ") + e.what(), hint);
  }

  // The record is written even when the run failed: partial metrics are kept, status says why.
  if (!record_path.empty()) {
    try {
      record.write(record_path);
    } catch (const st::common::Error& e) {
      print_error(e.code(), e.what(), e.hint());
      if (code == ExitCode::kOk) code = e.code();
    }
  }
  return static_cast<int>(code);
}
