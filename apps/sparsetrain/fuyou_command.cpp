// `sparsetrain fuyou …`: fine-tuning beyond GPU and CPU memory, streaming states from SSDs.
#include "cli.h"

namespace sparsetrain::cli {

void add_fuyou_commands(CLI::App& app) {
  CLI::App* fuyou = app.add_subcommand("fuyou", "Fine-tune models larger than GPU and CPU memory from SSDs");
  fuyou->configurable();
  add_fuyou_io_commands(*fuyou);
}

}  // namespace sparsetrain::cli
