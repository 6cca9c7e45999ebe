#include "graph_read_flags.h"

namespace sparsetrain::cli {

void GraphReadFlags::add_to(CLI::App* command) {
  command
      ->add_option("--duplicates", duplicates,
                   "Repeated pairs: merge (keep the first), keep, error")
      ->check(CLI::IsMember({"merge", "keep", "error"}));
  command->add_option("--self-loops", self_loops, "Self loops: keep (never pruned), drop, error")
      ->check(CLI::IsMember({"keep", "drop", "error"}));
  command->add_flag("--symmetrize,--directed", symmetrize,
                    "The edge file lists directed edges (ogbn-arxiv's citations): take each both "
                    "ways, merging a pair's two directions (to_undirected)");
}

teddy::LoadOptions GraphReadFlags::options() const {
  teddy::LoadOptions o;
  o.build.duplicates = duplicates == "keep"    ? teddy::DuplicatePolicy::kKeep
                       : duplicates == "error" ? teddy::DuplicatePolicy::kError
                                               : teddy::DuplicatePolicy::kMerge;
  o.build.self_loops = self_loops == "drop"    ? teddy::SelfLoopPolicy::kDrop
                       : self_loops == "error" ? teddy::SelfLoopPolicy::kError
                                               : teddy::SelfLoopPolicy::kKeep;
  o.symmetrize = symmetrize;
  return o;
}

}  // namespace sparsetrain::cli
