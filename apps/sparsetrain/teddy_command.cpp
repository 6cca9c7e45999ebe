// `sparsetrain teddy …`: graph lottery tickets — one-shot edge pruning and sparse GNN training.
#include "cli.h"

namespace sparsetrain::cli {

void add_teddy_commands(CLI::App& app) {
  CLI::App* teddy = app.add_subcommand("teddy", "Graph lottery tickets: TEDDY edge pruning and sparse GNN training");
  teddy->configurable();
}

}  // namespace sparsetrain::cli
