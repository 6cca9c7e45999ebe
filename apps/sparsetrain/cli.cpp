#include "cli.h"

#include <cctype>
#include <fstream>
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

void refuse_empty_values(CLI::App& app) {
  const CLI::Validator non_empty(
      [](std::string& value) { return value.empty() ? std::string("an empty value") : ""; }, "",
      "NONEMPTY");
  for (CLI::Option* option : app.get_options()) {
    if (option->get_type_size() != 0) option->check(non_empty);  // flags take no value
  }
  for (CLI::App* sub : app.get_subcommands({})) refuse_empty_values(*sub);
}

namespace {

// The --config file named on the command line, or "".
std::string config_path(const std::vector<std::string>& args) {
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) return args[i + 1];
    if (args[i].rfind("--config=", 0) == 0) return args[i].substr(9);
  }
  return "";
}

std::string trimmed(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// 1-based line of `file` whose text starts with `item` (as CLI11 quotes it) as a whole word
// ("seed" is not the line "seeds = 2"), or 0.
int line_of(const std::string& file, const std::string& item) {
  if (item.empty()) return 0;
  const auto word = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  };
  std::ifstream in(file);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const std::string t = trimmed(line);
    if (t.rfind(item, 0) != 0) continue;
    if (t.size() > item.size() && word(item.back()) && word(t[item.size()])) continue;
    return n;
  }
  return 0;
}

}  // namespace

ParseErrorText describe_parse_error(const CLI::ParseError& error,
                                    const std::vector<std::string>& args) {
  const std::string what = error.what();
  const std::string file = config_path(args);
  const std::string help = "see 'sparsetrain --help'";
  if (file.empty()) return {what, help};
  const std::string layout =
      "a TOML config holds global options as name = value at the top and a command's options "
      "under its table, e.g. [teddy.run] then epochs = 200 (see the command's --help)";
  // CLI11's ConfigError: "INI was not able to parse ITEM" (an unknown option or a line that is
  // not name = value), "ITEM: This option is not allowed in a configuration file", "FILE was not
  // readable (missing?)"; a bad value reads "Could not convert: --name = value".
  const std::string not_parsed = "INI was not able to parse ";
  if (what.rfind(not_parsed, 0) == 0) {
    const std::string item = what.substr(not_parsed.size());
    const int line = line_of(file, item);
    return {"TOML config '" + file + "'" + (line ? " line " + std::to_string(line) : "") + ": '" +
                item + "' is not an option of this command, or not name = value",
            layout};
  }
  const std::string not_converted = "Could not convert: --";
  if (what.rfind(not_converted, 0) == 0) {
    const std::string item = what.substr(not_converted.size());
    const std::string name = trimmed(item.substr(0, item.find('=')));
    const int line = line_of(file, name);
    if (line > 0) {
      return {"TOML config '" + file + "' line " + std::to_string(line) + ": bad value in '" +
                  item + "'",
              "check the value's type in the command's --help; quote strings as \"text\""};
    }
  }
  if (what.find("was not readable") != std::string::npos) {
    return {"TOML config '" + file + "' cannot be read (missing or not a file)",
            "pass the path of a TOML file to --config"};
  }
  return {what, help};
}

}  // namespace sparsetrain::cli
