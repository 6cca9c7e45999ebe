// Token data for fine-tuning: llm.c `.bin` files (256 int32 header: magic 20240520, version 1,
// token count; then uint16 tokens) and raw text with a byte-level tokenizer (vocab 256), and the
// deterministic sampling of (batch, seq + 1) windows from a seed with a train/validation split.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace sparsetrain::fuyou {

class TokenData {
 public:
  // Validates the header (magic, version, count against file size); UsageError otherwise.
  static TokenData from_llmc_bin(const std::string& path);
  // Every byte of the file is one token in [0, 256).
  static TokenData from_text_file(const std::string& path);
  static TokenData from_bytes(const std::string& text);

  std::int64_t size() const { return static_cast<std::int64_t>(tokens_.size()); }
  // Largest token id + 1 seen (the vocabulary a model needs at least).
  std::int64_t vocab_needed() const;
  const std::vector<std::uint16_t>& tokens() const { return tokens_; }

  // Splits off the last `valid_fraction` of tokens as validation data: {train, valid}.
  std::pair<TokenData, TokenData> split(double valid_fraction) const;

  // Batch of windows for (seed, index): inputs and targets int64 [batch, seq], targets shifted by
  // one. The same (seed, index) always gives the same batch; throws UsageError when the data has
  // fewer than seq + 1 tokens.
  std::pair<at::Tensor, at::Tensor> batch(std::uint64_t seed, std::int64_t index, std::int64_t batch,
                                          std::int64_t seq) const;

 private:
  std::vector<std::uint16_t> tokens_;
};

}  // namespace sparsetrain::fuyou
