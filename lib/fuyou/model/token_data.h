// Token data for fine-tuning: llm.c `.bin` files (256 int32 header: magic 20240520, version 1,
// token count; then uint16 tokens) and raw text with a byte-level tokenizer (vocab 256), and the
// deterministic sampling of (batch, seq + 1) windows from a seed with a train/validation split.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace at {
class Tensor;
}

namespace sparsetrain::fuyou {

class TokenData {
 public:
  // Validates the header (magic, version, count against file size); UsageError otherwise.
  static TokenData from_llmc_bin(const std::string& path);
  // Every byte of the file is one token in [0, 256). UsageError for an empty file.
  static TokenData from_text_file(const std::string& path);
  // `source` names the data in error messages.
  static TokenData from_bytes(const std::string& text, std::string source = "text");
  // Tokens already in memory (tests, generated data).
  static TokenData from_tokens(std::vector<std::uint16_t> tokens, std::string source = "tokens");

  std::int64_t size() const { return static_cast<std::int64_t>(tokens_.size()); }
  // Largest token id + 1 seen (the vocabulary a model needs at least).
  std::int64_t vocab_needed() const { return vocab_needed_; }
  const std::vector<std::uint16_t>& tokens() const { return tokens_; }
  // Where the tokens came from ("data/tiny.bin", "data/tiny.bin (valid)"), for messages.
  const std::string& source() const { return source_; }

  // Writes the tokens as an llm.c `.bin` file (version 1), atomically.
  void write_llmc_bin(const std::string& path) const;

  // Splits off the last round(size * valid_fraction) tokens as validation data: {train, valid}.
  // valid_fraction in [0, 1); UsageError otherwise. The parts do not overlap.
  std::pair<TokenData, TokenData> split(double valid_fraction) const;

  // Batch of windows for (seed, index): inputs and targets int64 [batch, seq], targets shifted by
  // one. Row r starts at a position drawn uniformly from [0, size - seq - 1] by a counter-based
  // hash of (seed, index, r), so the same (seed, index) always gives the same batch on every
  // machine and thread count; throws UsageError when the data has fewer than seq + 1 tokens.
  std::pair<at::Tensor, at::Tensor> batch(std::uint64_t seed, std::int64_t index,
                                          std::int64_t batch, std::int64_t seq) const;

 private:
  TokenData(std::vector<std::uint16_t> tokens, std::string source);

  std::vector<std::uint16_t> tokens_;
  std::string source_;
  std::int64_t vocab_needed_ = 0;
};

}  // namespace sparsetrain::fuyou
