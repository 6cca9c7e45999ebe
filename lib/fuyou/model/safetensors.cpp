#include "fuyou/model/safetensors.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/input_file.h"

namespace sparsetrain::fuyou {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

namespace {

constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the Rust reference's MAX_HEADER_SIZE
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kHint = "the file is not a valid safetensors file; re-export it";

struct DtypeInfo {
  const char* name;  // as in the header: "BF16"
  at::ScalarType type;
  std::uint64_t bytes;  // per element
};
constexpr DtypeInfo kDtypes[] = {
    {"F32", at::kFloat, 4}, {"F16", at::kHalf, 2}, {"BF16", at::kBFloat16, 2}};

const DtypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}
const DtypeInfo* find_dtype(at::ScalarType type) {
  for (const auto& d : kDtypes) {
    if (type == d.type) return &d;
  }
  return nullptr;
}

// One tensor entry of a validated header. begin, end: bytes relative to the data section.
struct Entry {
  std::string name;
  const DtypeInfo* dtype = nullptr;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by begin
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start = 0;  // file offset of the data section
};

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
  entry.dtype = find_dtype(dtype.get<std::string>());
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

Header read_header(const common::InputFile& file) {
  const std::string& path = file.path();
  if (file.size() < 8)
    fail(path,
         "has " + std::to_string(file.size()) + " bytes, too short for the 8-byte header length");
  unsigned char length_bytes[8];
  file.read_exact(0, length_bytes, 8);
  std::uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | length_bytes[i];
  if (header_bytes > file.size() - 8) {
    fail(path, "header length " + std::to_string(header_bytes) + " reaches beyond the file's " +
                   std::to_string(file.size()) + " bytes");
  }
  if (header_bytes > kMaxHeaderBytes) {
    fail(path, "header length " + std::to_string(header_bytes) + " exceeds the 100 MB limit");
  }
  std::string text(header_bytes, '\0');
  file.read_exact(8, text.data(), text.size());
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

  Header header;
  header.data_start = 8 + header_bytes;
  for (const auto& [name, value] : json.items()) {
    if (name == kMetadataKey) {
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
  const std::uint64_t data_bytes = file.size() - header.data_start;
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

TensorMap read_safetensors(const std::string& path) {
  common::InputFile file(path);
  const Header header = read_header(file);
  TensorMap tensors;
  for (const Entry& entry : header.entries) {
    at::Tensor tensor = at::empty(entry.shape, at::TensorOptions().dtype(entry.dtype->type));
    if (entry.end > entry.begin) {
      file.read_exact(header.data_start + entry.begin, tensor.data_ptr(), entry.end - entry.begin);
    }
    tensors.emplace(entry.name, std::move(tensor));
  }
  return tensors;
}

struct SafetensorsReader::Impl {
  explicit Impl(const std::string& path) : file(path), header(read_header(file)) {}
  common::InputFile file;
  Header header;
  std::vector<Info> infos;
  std::map<std::string, const Entry*> by_name;
};

SafetensorsReader::SafetensorsReader(const std::string& path)
    : impl_(std::make_unique<Impl>(path)) {
  for (const Entry& entry : impl_->header.entries) {
    impl_->infos.push_back({entry.name, entry.dtype->name, entry.shape});
    impl_->by_name[entry.name] = &entry;
  }
}

SafetensorsReader::~SafetensorsReader() = default;

const std::vector<SafetensorsReader::Info>& SafetensorsReader::tensors() const {
  return impl_->infos;
}

at::Tensor SafetensorsReader::read(const std::string& name) const {
  const auto found = impl_->by_name.find(name);
  if (found == impl_->by_name.end()) fail(impl_->file.path(), "has no tensor '" + name + "'");
  const Entry& entry = *found->second;
  at::Tensor tensor = at::empty(entry.shape, at::TensorOptions().dtype(entry.dtype->type));
  if (entry.end > entry.begin) {
    impl_->file.read_exact(impl_->header.data_start + entry.begin, tensor.data_ptr(),
                           entry.end - entry.begin);
  }
  return tensor;
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  common::InputFile file(path);
  return read_header(file).metadata;
}

void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    at::Tensor tensor;  // contiguous
    const DtypeInfo* dtype;
  };
  std::vector<Item> items;
  for (const auto& [name, tensor] : tensors) {
    const std::string where = "cannot write tensor '" + name + "' to '" + path + "': ";
    if (name == kMetadataKey) {
      throw common::UsageError(where + "the name is reserved", "rename the tensor");
    }
    if (!tensor.defined()) throw common::UsageError(where + "it is undefined");
    if (!tensor.device().is_cpu()) {
      throw common::UsageError(where + "it is on " + tensor.device().str(),
                               "move it to the CPU first");
    }
    const DtypeInfo* dtype = find_dtype(tensor.scalar_type());
    if (dtype == nullptr) {
      throw common::UsageError(
          where + "dtype " + std::string(c10::toString(tensor.scalar_type())) + " is not supported",
          "convert it to bf16, fp16 or fp32");
    }
    items.push_back({&name, tensor.contiguous(), dtype});
  }
  // Largest elements first, so every tensor starts aligned to its element size.
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.dtype->bytes > b.dtype->bytes; });

  nlohmann::json json = nlohmann::json::object();
  if (!metadata.empty()) json[kMetadataKey] = metadata;
  std::uint64_t offset = 0;
  for (const Item& item : items) {
    const auto bytes = static_cast<std::uint64_t>(item.tensor.numel()) * item.dtype->bytes;
    json[*item.name] = {{"dtype", item.dtype->name},
                        {"shape", item.tensor.sizes().vec()},
                        {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header = json.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i)
    length_bytes[i] = static_cast<unsigned char>(header.size() >> (8 * i));

  common::AtomicFile out(path);
  out.write(length_bytes, 8);
  out.write(header.data(), header.size());
  for (const Item& item : items) {
    out.write(item.tensor.data_ptr(),
              static_cast<std::size_t>(item.tensor.numel()) * item.dtype->bytes);
  }
  out.commit();
}

}  // namespace sparsetrain::fuyou
