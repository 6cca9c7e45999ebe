#include "fuyou/model/safetensors_header.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"
#include "common/input_file.h"

namespace sparsetrain::fuyou {

namespace {

constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the Rust reference's MAX_HEADER_SIZE
constexpr const char* kHint = "the file is not a valid safetensors file; re-export it";

constexpr SafetensorsDtype kDtypes[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}};

using Entry = SafetensorsEntry;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw common::UsageError("safetensors file '" + path + "': " + what, kHint);
}
[[noreturn]] void fail_tensor(const std::string& path, const std::string& name,
                              const std::string& what) {
  fail(path, "tensor '" + name + "' " + what);
}

std::string offsets_text(std::uint64_t begin, std::uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& value) {
  if (!value.is_object()) fail_tensor(path, name, "is not a JSON object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) fail_tensor(path, name, std::string("has no \"") + key + "\"");
  }
  Entry entry;
  entry.name = name;
  const auto& dtype = value["dtype"];
  if (!dtype.is_string()) fail_tensor(path, name, "has a dtype that is not a string");
  entry.dtype = find_safetensors_dtype(dtype.get<std::string>());
  if (entry.dtype == nullptr) {
    fail_tensor(
        path, name,
        "has dtype '" + dtype.get<std::string>() + "'; only BF16, F16 and F32 are supported");
  }
  const auto& shape = value["shape"];
  if (!shape.is_array()) fail_tensor(path, name, "has a shape that is not an array");
  std::uint64_t numel = 1;
  for (const auto& dim : shape) {
    if (!dim.is_number_unsigned() ||
        dim.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
      fail_tensor(
          path, name,
          "has shape " + shape.dump() + " with a dimension that is not a non-negative integer");
    }
    const std::uint64_t d = dim.get<std::uint64_t>();
    if (__builtin_mul_overflow(numel, d, &numel))
      fail_tensor(path, name, "has shape " + shape.dump() + " that overflows");
    entry.shape.push_back(static_cast<std::int64_t>(d));
  }
  const auto& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    fail_tensor(path, name,
                "has data_offsets " + offsets.dump() + ", not two non-negative integers");
  }
  entry.begin = offsets[0].get<std::uint64_t>();
  entry.end = offsets[1].get<std::uint64_t>();
  if (entry.begin > entry.end) {
    fail_tensor(path, name, "has reversed data_offsets " + offsets_text(entry.begin, entry.end));
  }
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(numel, entry.dtype->bytes, &bytes) ||
      bytes != entry.end - entry.begin) {
    fail_tensor(path, name,
                "has shape " + shape.dump() + " of " + entry.dtype->name + " (" +
                    std::to_string(numel) + " elements) but data_offsets " +
                    offsets_text(entry.begin, entry.end) + " span " +
                    std::to_string(entry.end - entry.begin) + " bytes");
  }
  if (entry.begin % entry.dtype->bytes != 0) {
    fail_tensor(path, name,
                "has data_offsets " + offsets_text(entry.begin, entry.end) +
                    " misaligned for its " + std::to_string(entry.dtype->bytes) + "-byte " +
                    entry.dtype->name + " elements");
  }
  return entry;
}

// The header of the `file_size`-byte file `path`; read(offset, dst, bytes) reads its bytes.
using ReadFn = std::function<void(std::uint64_t offset, void* dst, std::size_t bytes)>;
SafetensorsHeader read_header(const std::string& path, std::uint64_t file_size,
                              const ReadFn& read) {
  if (file_size < 8)
    fail(path,
         "has " + std::to_string(file_size) + " bytes, too short for the 8-byte header length");
  unsigned char length_bytes[8];
  read(0, length_bytes, 8);
  std::uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | length_bytes[i];
  if (header_bytes > file_size - 8) {
    fail(path, "header length " + std::to_string(header_bytes) + " reaches beyond the file's " +
                   std::to_string(file_size) + " bytes");
  }
  if (header_bytes > kMaxHeaderBytes) {
    fail(path, "header length " + std::to_string(header_bytes) + " exceeds the 100 MB limit");
  }
  std::string text(header_bytes, '\0');
  read(8, text.data(), text.size());
  nlohmann::json json;
  // The format forbids a name twice (JSON parsers would keep one of them silently, and two
  // readers could then disagree on what the file holds): the parser's callback sees every key.
  std::set<std::string> names;
  std::string repeated;
  const nlohmann::json::parser_callback_t note_keys =
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        if (depth == 1 && event == nlohmann::json::parse_event_t::key && repeated.empty() &&
            !names.insert(parsed.get<std::string>()).second) {
          repeated = parsed.get<std::string>();
        }
        return true;
      };
  try {
    json = nlohmann::json::parse(text, note_keys);
  } catch (const nlohmann::json::exception& e) {
    fail(path, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!repeated.empty()) fail(path, "header names tensor '" + repeated + "' twice");
  if (!json.is_object()) fail(path, "header is JSON but not an object of tensors");

  SafetensorsHeader header;
  header.data_start = 8 + header_bytes;
  for (const auto& [name, value] : json.items()) {
    if (name == kSafetensorsMetadataKey) {
      if (!value.is_object()) fail(path, "\"__metadata__\" is not an object of strings");
      for (const auto& [key, text_value] : value.items()) {
        if (!text_value.is_string())
          fail(path, "\"__metadata__\" entry '" + key + "' is not a string");
        header.metadata[key] = text_value.get<std::string>();
      }
      continue;
    }
    header.entries.push_back(parse_entry(path, name, value));
  }
  // Sorted by (begin, end): a zero-size tensor may sit at the start of the next one.
  std::sort(header.entries.begin(), header.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const std::uint64_t data_bytes = file_size - header.data_start;
  std::uint64_t covered = 0;  // data bytes [0, covered) belong to the tensors checked so far
  const Entry* previous = nullptr;
  for (const Entry& entry : header.entries) {
    if (entry.end > data_bytes) {
      fail_tensor(path, entry.name,
                  "has data_offsets " + offsets_text(entry.begin, entry.end) + " beyond the " +
                      std::to_string(data_bytes) + " bytes of data");
    }
    if (entry.begin < covered) {
      fail_tensor(path, entry.name,
                  "has data_offsets " + offsets_text(entry.begin, entry.end) +
                      " overlapping tensor '" + previous->name + "' " +
                      offsets_text(previous->begin, previous->end));
    }
    if (entry.begin > covered) {
      fail_tensor(path, entry.name,
                  "starts at byte " + std::to_string(entry.begin) + ", leaving data bytes " +
                      offsets_text(covered, entry.begin) + " unused");
    }
    covered = entry.end;
    previous = &entry;
  }
  if (covered != data_bytes) {
    fail(path,
         "has " + std::to_string(data_bytes - covered) + " bytes of data after the last tensor");
  }
  return header;
}

}  // namespace

const SafetensorsDtype* find_safetensors_dtype(std::string_view name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

SafetensorsHeader read_safetensors_header(const common::InputFile& file) {
  return read_header(file.path(), file.size(),
                     [&](std::uint64_t offset, void* dst, std::size_t bytes) {
                       file.read_exact(offset, dst, bytes);
                     });
}

SafetensorsHeader parse_safetensors_header(std::string_view file, const std::string& name) {
  return read_header(name, file.size(), [&](std::uint64_t offset, void* dst, std::size_t bytes) {
    std::memcpy(dst, file.data() + offset, bytes);  // read_header stays within file.size()
  });
}

}  // namespace sparsetrain::fuyou
