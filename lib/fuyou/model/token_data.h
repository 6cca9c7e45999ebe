// Token data for fine-tuning, and the deterministic sampling of (batch, seq + 1) windows from a
// seed with a train/validation split:
//  - llm.c token files (karpathy/llm.c dev/data/data_common.py write_datafile): 256 little-endian
//    int32 header words (magic, version, token count), then the tokens: magic 20240520 version 1
//    uint16 (GPT-2 vocabularies), magic 20240801 version 7 uint32 (Llama 3 and other vocabularies
//    past 65,536). Memory-mapped: a file of billions of tokens takes page cache, not a copy.
//  - an optional loss mask beside them (scripts/prepare_tokens.py writes both): the same header
//    with magic kLossMaskMagic, then one byte per token, 1 where the token is trained as a target
//    (a completion, an assistant turn, the end-of-text after it) and 0 where it is not (a prompt).
//    A masked target reads kIgnoredTarget in batch(); the loss is the mean over the others
//    (gpt_model.h: lm_loss).
//  - raw text with a byte-level tokenizer (vocab 256).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace sparsetrain::fuyou {

// A target the loss skips: PyTorch's cross-entropy ignore_index default, Hugging Face's label for
// "not trained on".
inline constexpr std::int64_t kIgnoredTarget = -100;
// The loss-mask file's magic ("MASK" in ASCII, little-endian) and version.
inline constexpr std::int32_t kLossMaskMagic = 0x4B53414D;
inline constexpr std::int32_t kLossMaskVersion = 1;

class TokenData {
 public:
  // Validates the header (magic, version, count against file size) and every token's range;
  // UsageError naming the file otherwise.
  static TokenData from_llmc_bin(const std::string& path);
  // Every byte of the file is one token in [0, 256). UsageError for an empty file.
  static TokenData from_text_file(const std::string& path);
  // `source` names the data in error messages.
  static TokenData from_bytes(const std::string& text, std::string source = "text");
  // Tokens already in memory (tests, generated data); `mask` empty (every target trained) or one
  // 0/1 byte per token.
  static TokenData from_tokens(std::vector<std::uint32_t> tokens, std::string source = "tokens",
                               std::vector<std::uint8_t> mask = {});

  // These tokens with the loss mask file `path` (memory-mapped); UsageError when its header,
  // size, token count or a byte (0 or 1 only) is wrong, or when it masks every target.
  TokenData with_loss_mask(const std::string& path) const;

  std::int64_t size() const { return size_; }
  std::int64_t token(std::int64_t i) const;   // 0 <= i < size()
  std::vector<std::uint32_t> tokens() const;  // a copy (tests, small data)
  // Largest token id + 1 seen (the vocabulary a model needs at least).
  std::int64_t vocab_needed() const { return vocab_needed_; }
  bool has_loss_mask() const;
  // Tokens trained as targets (mask 1), all of them without a mask.
  std::int64_t trained_tokens() const { return trained_; }
  // Where the tokens came from ("data/tiny.bin", "data/tiny.bin (valid)"), for messages.
  const std::string& source() const { return source_; }

  // Writes the tokens as an llm.c token file, atomically: version 1 (uint16) when every id fits
  // 16 bits, else version 7 (uint32); and, when masked, the mask to `mask_path` (else it must be
  // empty).
  void write_llmc_bin(const std::string& path, const std::string& mask_path = "") const;

  // Splits off the last round(size * valid_fraction) tokens as validation data: {train, valid}.
  // valid_fraction in [0, 1); UsageError otherwise. The parts do not overlap; the mask follows.
  std::pair<TokenData, TokenData> split(double valid_fraction) const;

  // Batch of windows for (seed, index): inputs and targets int64 [batch, seq], targets shifted by
  // one (kIgnoredTarget where the mask is 0). Row r starts at a position drawn uniformly from
  // [0, size - seq - 1] by a counter-based hash of (seed, index, r), so the same (seed, index)
  // always gives the same batch on every machine and thread count; throws UsageError when the data
  // has fewer than seq + 1 tokens.
  std::pair<at::Tensor, at::Tensor> batch(std::uint64_t seed, std::int64_t index,
                                          std::int64_t batch, std::int64_t seq) const;

  struct Storage;  // the tokens (and mask) in memory or mapped (token_data.cpp)

 private:
  TokenData(std::shared_ptr<const Storage> storage, std::int64_t first, std::int64_t size,
            std::string source);
  std::uint8_t mask_at(std::int64_t i) const;  // 1 without a mask

  std::shared_ptr<const Storage> storage_;
  std::int64_t first_ = 0, size_ = 0;  // this part's tokens: [first_, first_ + size_) of storage_
  std::string source_;
  std::int64_t vocab_needed_ = 0, trained_ = 0;
};

}  // namespace sparsetrain::fuyou
