#include "cli.h"

#include <map>

namespace sparsetrain::cli {

namespace {
std::map<const CLI::App*, CommandFn>& runners() {
  static std::map<const CLI::App*, CommandFn> table;
  return table;
}
}  // namespace

void set_command_runner(CLI::App* command, CommandFn run) { runners()[command] = std::move(run); }

const CommandFn* find_command_runner(const CLI::App* command) {
  auto it = runners().find(command);
  return it == runners().end() ? nullptr : &it->second;
}

bool is_plumbing_option(const std::string& name) {
  return name == "out" || name == "out-graph" || name == "jsonl" || name == "log-level" ||
         name == "progress" || name == "dry-run" || name == "config" || name == "help" ||
         name == "version";
}

CLI::Option* add_gzip_level_option(CLI::App* command, int& level) {
  return command
      ->add_option("--gzip-level", level, "gzip level of the written files (1 fast .. 9 small)")
      ->check(CLI::Range(1, 9));
}

}  // namespace sparsetrain::cli
