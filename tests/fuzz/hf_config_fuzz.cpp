// libFuzzer harness for Hugging Face config.json (fuyou/model/hf_config.h): the bytes are written
// as a model directory's config.json and read by model_config_from_hf. The contract: any input
// gives a ModelConfig that validate() accepts, or a common::UsageError — never a crash, hang,
// sanitizer report or other exception. See run_fuzz.sh.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "fuyou/model/hf_config.h"

namespace fs = std::filesystem;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("st-fuzz-hf-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  {
    std::ofstream out(dir / "config.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const sparsetrain::fuyou::ModelConfig c = sparsetrain::fuyou::model_config_from_hf(dir);
    c.validate();  // what it returns must be a model the trainers can size
    if (c.param_count() <= 0) std::abort();
  } catch (const sparsetrain::common::UsageError&) {
  }
  return 0;
}
