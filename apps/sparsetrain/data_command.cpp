// `sparsetrain data fetch|list`: the public node-classification graphs (Cora, CiteSeer, PubMed,
// ogbn-arxiv, ogbn-products) downloaded, checked against pinned SHA-256s and converted to the OGB
// raw layout that `teddy` and `graph` read. The work is scripts/data_fetch.py's (the Planetoid
// files are numpy/scipy pickles): this command runs it with the project venv's Python, its
// arguments as given, and becomes it (exec), so its output, progress bar and exit status
// (0 ok, 1 download or check failed, 2 bad input, 3 numpy/scipy missing) are the command's own.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.h"
#include "common/error.h"

#ifndef SPARSETRAIN_SOURCE_DIR
#define SPARSETRAIN_SOURCE_DIR "."
#endif

namespace sparsetrain::cli {

namespace {

namespace fs = std::filesystem;

// The checkout the script lives in: $SPARSETRAIN_ROOT, else the one this binary was built from.
fs::path project_root() {
  const char* root = std::getenv("SPARSETRAIN_ROOT");
  return root != nullptr && *root != '\0' ? fs::path(root) : fs::path(SPARSETRAIN_SOURCE_DIR);
}

[[noreturn]] void exec_script(const std::string& verb, const std::vector<std::string>& extra,
                              const CommandContext& context) {
  const fs::path root = project_root();
  const fs::path script = root / "scripts" / "data_fetch.py";
  if (!fs::is_regular_file(script)) {
    throw common::EnvironmentError("cannot find '" + script.string() + "'",
                                   "set SPARSETRAIN_ROOT to the sparsetrain checkout");
  }
  const fs::path venv = root / ".venv" / "bin" / "python";
  const std::string python = fs::exists(venv) ? venv.string() : "python3";
  std::vector<std::string> args = {python, script.string(), verb};
  args.insert(args.end(), extra.begin(), extra.end());
  // A global --progress given before `data` is the script's too (after the verb, every argument
  // is the script's already).
  const bool progress_given = std::find(extra.begin(), extra.end(), "--progress") != extra.end();
  if (verb == "fetch" && context.global.progress != "auto" && !progress_given) {
    args.push_back("--progress");
    args.push_back(context.global.progress);
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  throw common::EnvironmentError("cannot run '" + python + "': " + std::strerror(errno),
                                 "run scripts/setup.sh (it makes the project venv)");
}

void add_verb(CLI::App* data, const std::string& verb, const std::string& what) {
  CLI::App* command = data->add_subcommand(verb, what);
  command->set_help_flag();  // --help is the script's, with every option it has
  command->allow_extras();
  command->fallthrough(false);  // not even the global flags: the script has its own
  command->prefix_command();    // everything after the verb goes to the script as it is
  set_command_runner(command, [command, verb](CommandContext& context) {
    exec_script(verb, command->remaining(), context);
  });
}

}  // namespace

void add_data_commands(CLI::App& app) {
  CLI::App* data = app.add_subcommand(
      "data", "Datasets: fetch the TEDDY paper's graphs (checked, converted to the OGB layout)");
  add_verb(data, "fetch",
           "Download (or take --from DIR), check and convert NAME: cora, citeseer, pubmed, "
           "ogbn-arxiv, ogbn-products (see 'data fetch --help')");
  add_verb(data, "list", "The known datasets and which are on disk (--json)");
}

}  // namespace sparsetrain::cli
