// The flags that say how a graph is read (`graph stats`, `teddy prune`, `teddy run`): one set,
// one help text, mapped onto teddy::LoadOptions.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "teddy/graph/graph_io.h"

namespace sparsetrain::cli {

struct GraphReadFlags {
  std::string duplicates = "merge";  // --duplicates merge|keep|error
  std::string self_loops = "keep";   // --self-loops keep|drop|error
  bool symmetrize = false;           // --symmetrize (alias --directed)

  void add_to(CLI::App* command);
  teddy::LoadOptions options() const;
};

}  // namespace sparsetrain::cli
