// safetensors files (https://github.com/huggingface/safetensors format): 8-byte little-endian
// header length, a JSON header mapping tensor name -> {dtype, shape, data_offsets} (plus optional
// "__metadata__"), then the raw little-endian bytes. We read and write bf16, fp16 and fp32 (and
// refuse anything else), and refuse malformed headers, overlapping or out-of-range offsets with a
// UsageError naming the file and the tensor.
//
// Read checks (each a UsageError naming file and tensor): header length within the file (and at
// most 100 MB, like the reference implementation), header is a JSON object, every entry has a
// known dtype (BF16, F16, F32), a shape of non-negative integers and data_offsets [begin, end]
// with begin <= end, end - begin == numel * element size, begin a multiple of the element size,
// no two tensors overlapping, and the tensors covering the data section exactly (no gaps, no
// trailing bytes; the Python package refuses those files too). Not handled: other dtypes,
// memory-mapping (tensors are read into fresh CPU memory), big-endian hosts.
// The header is read and checked by safetensors_header.h (torch-free).
// Writing matches the Python package's layout: header padded with spaces to a multiple of 8 bytes,
// data ordered by element size (largest first) then name, so every tensor is aligned.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace sparsetrain::fuyou {

// name -> CPU tensor (contiguous, dtype as stored). std::map: deterministic order.
using TensorMap = std::map<std::string, at::Tensor>;

TensorMap read_safetensors(const std::string& path);

// The same file tensor by tensor: the header is read and checked on open, as above; each read()
// reads that one tensor's bytes. For a checkpoint that need not fit in memory at once.
class SafetensorsReader {
 public:
  struct Info {
    std::string name;
    std::string dtype;  // "F32", "F16", "BF16"
    std::vector<std::int64_t> shape;
  };
  explicit SafetensorsReader(const std::string& path);  // UsageError as read_safetensors
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::vector<Info>& tensors() const;  // in the file's data order
  // A CPU tensor, contiguous, dtype as stored; UsageError naming the file for an unknown name.
  at::Tensor read(const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};
// Only the "__metadata__" string map (empty when absent); validates the whole header as above.
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);
// Written atomically (temp + rename); metadata goes to "__metadata__". Tensors must be defined,
// on the CPU, bf16/fp16/fp32 (UsageError naming the tensor otherwise); non-contiguous ones are
// copied. Streams tensor by tensor: no second copy of the model in memory.
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sparsetrain::fuyou
