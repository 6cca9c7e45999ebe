// `sparsetrain graph …`: inspect, convert and generate graphs (lib/teddy's graph layer).
#include "cli.h"

namespace sparsetrain::cli {

void add_graph_commands(CLI::App& app) {
  CLI::App* graph = app.add_subcommand("graph", "Graphs: statistics, generators, format conversion");
  graph->configurable();
}

}  // namespace sparsetrain::cli
