// libFuzzer harness for the tensor store's manifest (fuyou/store/tensor_store.h): the bytes are
// written as sparsetrain-store.json beside a data file, and TensorStore::open reads them; a store
// that opens is verified (every extent read and checked). The contract: open and verify succeed,
// or throw a common::Error (UsageError, RunError) naming the manifest — never a crash, hang,
// sanitizer report, other exception, or a read beyond the data file. See run_fuzz.sh.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"
#include "fuyou/store/tensor_store.h"

namespace fs = std::filesystem;
using sparsetrain::fuyou::TensorStore;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("st-fuzz-store-" + std::to_string(::getpid()));
    fs::create_directories(d);
    // A data file of 64 KiB of zeros: manifests may reference it or lie about it.
    std::ofstream(d / TensorStore::data_file_name(0), std::ios::binary)
        << std::string(64 * 1024, '\0');
    return d;
  }();
  {
    std::ofstream out(dir / TensorStore::kManifestName, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  sparsetrain::fuyou::StoreOptions options;
  options.io.backend = sparsetrain::common::io::IoBackend::kThreads;  // no ring per execution
  options.io.threads = 1;
  try {
    auto store = TensorStore::open({dir.string()}, options);
    (void)store->verify();
    for (const auto& info : store->tensors()) (void)store->info(info.name);
  } catch (const sparsetrain::common::Error&) {
  }
  return 0;
}
