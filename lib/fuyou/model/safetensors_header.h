// The header of a safetensors file, read and checked without torch: the readers in safetensors.h
// build on it, and the fuzz harness drives it alone. The checks are the ones safetensors.h lists
// (header length, JSON object, dtype, shape, data_offsets, no tensor named twice, no overlap, no
// gap, no trailing bytes), each a UsageError naming the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sparsetrain::common {
class InputFile;
}

namespace sparsetrain::fuyou {

// A dtype we read and write: its name in a header and its element size.
struct SafetensorsDtype {
  const char* name;     // "F32", "F16", "BF16"
  std::uint64_t bytes;  // per element
};
// The supported dtype called `name` in a header, or null.
const SafetensorsDtype* find_safetensors_dtype(std::string_view name);

// One tensor of a checked header. begin, end: bytes relative to the data section.
struct SafetensorsEntry {
  std::string name;
  const SafetensorsDtype* dtype = nullptr;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;        // sorted by (begin, end)
  std::map<std::string, std::string> metadata;  // "__metadata__"
  std::uint64_t data_start = 0;                 // file offset of the data section
};

// The key of the metadata map in a header (no tensor may have this name).
inline constexpr const char* kSafetensorsMetadataKey = "__metadata__";

// Reads the 8-byte length and the JSON header of `file` and checks them against its size.
SafetensorsHeader read_safetensors_header(const common::InputFile& file);
// The same for a whole file held in memory; `name` stands for its path in messages.
SafetensorsHeader parse_safetensors_header(std::string_view file, const std::string& name);

}  // namespace sparsetrain::fuyou
