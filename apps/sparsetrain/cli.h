// The command-line skeleton shared by every command: the global flags (STYLE.md "Command line"),
// the registry that maps a CLI11 subcommand to the function that runs it, and what that function
// receives. Each command group lives in its own file (`*_command.cpp`) with an options struct,
// a setup function that declares flags, and a run function; no algorithms live in apps/.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/run/run_record.h"

namespace sparsetrain::cli {

// Flags every command accepts, before or after the subcommand name.
struct GlobalOptions {
  std::uint64_t seed = 0;  // --seed: every random choice derives from it
  std::string out;         // --out: run record path, '-' = stdout, empty = none
  std::string jsonl;       // --jsonl: event stream path, '-' = stdout
  std::string log_level = "info";
  std::string progress = "auto";
  bool dry_run = false;  // validate and print the plan, do no work
};

// What a command's run function gets: the global flags and the record it fills (metrics, timings).
struct CommandContext {
  const GlobalOptions& global;
  common::RunRecord& record;
  // Where main writes the record: --out, unless the command moves it (a data-parallel rank > 0
  // writes beside it, fuyou_command.cpp); empty = nowhere.
  std::string& record_path;
};

using CommandFn = std::function<void(CommandContext&)>;

// Marks `command` as runnable: when it is the deepest subcommand on the command line, main calls
// `run` after parsing. Groups (teddy, fuyou, graph) have no run function of their own.
void set_command_runner(CLI::App* command, CommandFn run);
// The runner registered for `command`, or nullptr.
const CommandFn* find_command_runner(const CLI::App* command);

// Option names that are output plumbing, not configuration: they go to the record's "run" block.
bool is_plumbing_option(const std::string& name);

// Options more than one command takes, with one help text. `--gzip-level` (1..9) of the graph
// files a command writes (teddy/graph/graph_io.h: SaveOptions).
CLI::Option* add_gzip_level_option(CLI::App* command, int& level);

// Every option of `app` and its subcommands that takes a value refuses an empty one: CLI11
// reads '' as 0 for a number (`--graph-sparsity ''` ran as sparsity 0) and as a path nobody
// meant. Call once all commands are added.
void refuse_empty_values(CLI::App& app);

// A parse error as the user should read it: one from the TOML `--config` file (CLI11 calls it
// "INI was not able to parse …") names TOML, the file and the line of the offending item, with
// a hint on the layout; any other error as CLI11 words it. `args` is argv.
struct ParseErrorText {
  std::string message, hint;
};
ParseErrorText describe_parse_error(const CLI::ParseError& error,
                                    const std::vector<std::string>& args);

// Command groups; each adds its subcommands to `app`.
void add_env_command(CLI::App& app);
// sparsetrain data fetch|list (data_command.cpp): scripts/data_fetch.py, run with the venv.
void add_data_commands(CLI::App& app);
void add_graph_commands(CLI::App& app);
void add_teddy_commands(CLI::App& app);
void add_fuyou_commands(CLI::App& app);
// `fuyou bench-io` and `fuyou store …` (fuyou_io_command.cpp), added to the fuyou group.
void add_fuyou_io_commands(CLI::App& fuyou);
// `teddy run` (teddy_run_command.cpp), added to the teddy group.
void add_teddy_run_command(CLI::App& teddy);

}  // namespace sparsetrain::cli
