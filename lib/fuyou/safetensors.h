// safetensors files (https://github.com/huggingface/safetensors format): 8-byte little-endian header
// length, a JSON header mapping tensor name -> {dtype, shape, data_offsets} (plus optional
// "__metadata__"), then the raw little-endian bytes. We read and write bf16, fp16 and fp32 (and
// refuse anything else), and refuse malformed headers, overlapping or out-of-range offsets with a
// UsageError naming the file and the tensor.
#pragma once

#include <map>
#include <string>

namespace at {
class Tensor;
}

namespace sparsetrain::fuyou {

// name -> CPU tensor (contiguous, dtype as stored). std::map: deterministic order.
using TensorMap = std::map<std::string, at::Tensor>;

TensorMap read_safetensors(const std::string& path);
// Written atomically (temp + rename); metadata goes to "__metadata__".
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sparsetrain::fuyou
