// libFuzzer harness for the safetensors header and tensor table (fuyou/model/safetensors_header.h):
// the bytes are a whole safetensors file, checked by parse_safetensors_header. The contract: a
// header whose tensors tile the data section exactly, each spanning numel x element size bytes
// at an aligned offset — or a common::UsageError; never a crash, hang, sanitizer report or other
// exception. See run_fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/error.h"
#include "fuyou/model/safetensors_header.h"

namespace fuyou = sparsetrain::fuyou;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view file(reinterpret_cast<const char*>(data), size);
  try {
    const fuyou::SafetensorsHeader h = fuyou::parse_safetensors_header(file, "fuzz.safetensors");
    if (h.data_start < 8 || h.data_start > size) std::abort();
    std::uint64_t covered = 0;
    for (const fuyou::SafetensorsEntry& e : h.entries) {
      if (e.dtype == nullptr || e.begin != covered || e.end < e.begin) std::abort();
      std::uint64_t numel = 1;
      for (const std::int64_t d : e.shape) {
        if (d < 0) std::abort();
        numel *= static_cast<std::uint64_t>(d);  // the parser refused overflow already
      }
      if (numel * e.dtype->bytes != e.end - e.begin || e.begin % e.dtype->bytes != 0) std::abort();
      if (e.name == fuyou::kSafetensorsMetadataKey) std::abort();
      covered = e.end;
    }
    if (covered != size - h.data_start) std::abort();  // no gap, no trailing bytes
  } catch (const sparsetrain::common::UsageError&) {
  }
  return 0;
}
