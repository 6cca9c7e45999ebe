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
#include "fuyou/model/safetensors_header.h"

namespace sparsetrain::fuyou {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

namespace {

// Each supported dtype as torch's scalar type, and back.
at::ScalarType scalar_type(const SafetensorsDtype& dtype) {
  const std::string_view name = dtype.name;
  return name == "F32" ? at::kFloat : name == "F16" ? at::kHalf : at::kBFloat16;
}
const SafetensorsDtype* find_dtype(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return find_safetensors_dtype("F32");
    case at::kHalf:
      return find_safetensors_dtype("F16");
    case at::kBFloat16:
      return find_safetensors_dtype("BF16");
    default:
      return nullptr;
  }
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw common::UsageError("safetensors file '" + path + "': " + what,
                           "the file is not a valid safetensors file; re-export it");
}

}  // namespace

TensorMap read_safetensors(const std::string& path) {
  common::InputFile file(path);
  const SafetensorsHeader header = read_safetensors_header(file);
  TensorMap tensors;
  for (const SafetensorsEntry& entry : header.entries) {
    at::Tensor tensor =
        at::empty(entry.shape, at::TensorOptions().dtype(scalar_type(*entry.dtype)));
    if (entry.end > entry.begin) {
      file.read_exact(header.data_start + entry.begin, tensor.data_ptr(), entry.end - entry.begin);
    }
    tensors.emplace(entry.name, std::move(tensor));
  }
  return tensors;
}

struct SafetensorsReader::Impl {
  explicit Impl(const std::string& path) : file(path), header(read_safetensors_header(file)) {}
  common::InputFile file;
  SafetensorsHeader header;
  std::vector<Info> infos;
  std::map<std::string, const SafetensorsEntry*> by_name;
};

SafetensorsReader::SafetensorsReader(const std::string& path)
    : impl_(std::make_unique<Impl>(path)) {
  for (const SafetensorsEntry& entry : impl_->header.entries) {
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
  const SafetensorsEntry& entry = *found->second;
  at::Tensor tensor = at::empty(entry.shape, at::TensorOptions().dtype(scalar_type(*entry.dtype)));
  if (entry.end > entry.begin) {
    impl_->file.read_exact(impl_->header.data_start + entry.begin, tensor.data_ptr(),
                           entry.end - entry.begin);
  }
  return tensor;
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  common::InputFile file(path);
  return read_safetensors_header(file).metadata;
}

void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    at::Tensor tensor;  // contiguous
    const SafetensorsDtype* dtype;
  };
  std::vector<Item> items;
  for (const auto& [name, tensor] : tensors) {
    const std::string where = "cannot write tensor '" + name + "' to '" + path + "': ";
    if (name == kSafetensorsMetadataKey) {
      throw common::UsageError(where + "the name is reserved", "rename the tensor");
    }
    if (!tensor.defined()) throw common::UsageError(where + "it is undefined");
    if (!tensor.device().is_cpu()) {
      throw common::UsageError(where + "it is on " + tensor.device().str(),
                               "move it to the CPU first");
    }
    const SafetensorsDtype* dtype = find_dtype(tensor.scalar_type());
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
  if (!metadata.empty()) json[kSafetensorsMetadataKey] = metadata;
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
