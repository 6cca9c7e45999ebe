// Weights out as a Hugging Face model directory that transformers' from_pretrained loads
// unchanged, for either family (model_config.h):
//   config.json                         the source directory's, with its dtype set; or written
//                                       from the config (hf_config_json)
//   model.safetensors                   when every tensor fits one shard, as save_pretrained does;
//   model-0000i-of-0000n.safetensors    else shards of at most `shard_bytes` each (a tensor larger
//   model.safetensors.index.json        than that gets a shard of its own), with the index
//   tokenizer.json, …                   the source directory's tokenizer and generation files
// Names are Hugging Face's: Llama's as model_weights.h has them; GPT-2's with "transformer." and
// its Conv1D weights transposed (hf_gpt2.h). The directory is built beside the target and renamed
// into place (common/atomic_file.h: AtomicDirectory): a failure leaves nothing half-written.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <string>

#include "fuyou/model/model_config.h"
#include "fuyou/model/model_weights.h"

namespace sparsetrain::fuyou {

struct HfExportOptions {
  at::ScalarType dtype = at::kBFloat16;       // bf16, fp16 or fp32
  std::uint64_t shard_bytes = 5'000'000'000;  // save_pretrained's 5 GB
  std::string source_dir;  // the model directory trained from ("" = none): config and tokenizer
  std::map<std::string, std::string> metadata;  // into each shard's "__metadata__"
};

// UsageError unless `dir` can be made: an existing non-empty directory (or a file) is refused, as
// is a missing parent. Checked before a run so that its end cannot fail on the path.
void check_hf_export_dir(const std::string& dir);

// Writes the directory (see above).
void export_hf_model_dir(const std::string& dir, const ModelConfig& config,
                         const ModelWeights& weights, const HfExportOptions& options);

}  // namespace sparsetrain::fuyou
