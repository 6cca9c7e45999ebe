#include "fuyou/model/token_data.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/input_file.h"

namespace sparsetrain::fuyou {

namespace {

// llm.c data files (dev/data/data_common.py write_datafile): 256 little-endian int32 header words.
constexpr std::int32_t kLlmcMagic = 20240520;
constexpr std::int32_t kLlmcVersion = 1;  // version 1: uint16 tokens (GPT-2); 2 is uint32 (Llama 3)
constexpr std::int64_t kLlmcHeaderWords = 256;
constexpr std::int64_t kLlmcHeaderBytes = kLlmcHeaderWords * 4;

// splitmix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix, good enough to turn
// counters into independent-looking draws.
std::uint64_t mix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

__extension__ typedef unsigned __int128 Uint128;  // GCC/Clang builtin; __extension__: -Wpedantic

// Uniform in [0, range) from 64 random bits (Lemire's multiply-shift; bias < range / 2^64).
std::uint64_t draw_below(std::uint64_t bits, std::uint64_t range) {
  return static_cast<std::uint64_t>((static_cast<Uint128>(bits) * range) >> 64);
}

}  // namespace

TokenData::TokenData(std::vector<std::uint16_t> tokens, std::string source)
    : tokens_(std::move(tokens)), source_(std::move(source)) {
  std::uint16_t max_token = 0;
  for (std::uint16_t t : tokens_) max_token = std::max(max_token, t);
  vocab_needed_ = tokens_.empty() ? 0 : static_cast<std::int64_t>(max_token) + 1;
}

TokenData TokenData::from_llmc_bin(const std::string& path) {
  common::InputFile file(path);
  const std::string hint =
      "expected an llm.c token file (dev/data/*.py in karpathy/llm.c write them)";
  if (file.size() < static_cast<std::uint64_t>(kLlmcHeaderBytes)) {
    throw common::UsageError("token file '" + path + "' has " + std::to_string(file.size()) +
                                 " bytes, less than the 1024-byte llm.c header",
                             hint);
  }
  std::int32_t header[kLlmcHeaderWords];
  file.read_exact(0, header, sizeof(header));
  if (header[0] != kLlmcMagic) {
    throw common::UsageError("token file '" + path + "' has magic " + std::to_string(header[0]) +
                                 ", not llm.c's " + std::to_string(kLlmcMagic),
                             hint);
  }
  if (header[1] != kLlmcVersion) {
    throw common::UsageError("token file '" + path + "' has version " + std::to_string(header[1]) +
                                 "; only version 1 (uint16 tokens) is supported",
                             "version 2 files hold uint32 Llama 3 tokens; re-tokenise with GPT-2");
  }
  const std::int64_t count = header[2];
  const std::uint64_t expected =
      kLlmcHeaderBytes + 2 * static_cast<std::uint64_t>(std::max<std::int64_t>(count, 0));
  if (count <= 0 || file.size() != expected) {
    throw common::UsageError("token file '" + path + "' header says " + std::to_string(count) +
                                 " tokens (" + std::to_string(expected) +
                                 " bytes) but the file has " + std::to_string(file.size()) +
                                 " bytes",
                             "the file is truncated or not an llm.c version 1 token file");
  }
  std::vector<std::uint16_t> tokens(static_cast<std::size_t>(count));
  file.read_exact(kLlmcHeaderBytes, tokens.data(), tokens.size() * sizeof(std::uint16_t));
  return TokenData(std::move(tokens), path);
}

TokenData TokenData::from_text_file(const std::string& path) {
  common::InputFile file(path);
  if (file.size() == 0) {
    throw common::UsageError("text file '" + path + "' is empty", "pass a file with some text");
  }
  std::string text(file.size(), '\0');
  file.read_exact(0, text.data(), text.size());
  return from_bytes(text, path);
}

TokenData TokenData::from_bytes(const std::string& text, std::string source) {
  std::vector<std::uint16_t> tokens(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) tokens[i] = static_cast<unsigned char>(text[i]);
  return TokenData(std::move(tokens), std::move(source));
}

TokenData TokenData::from_tokens(std::vector<std::uint16_t> tokens, std::string source) {
  return TokenData(std::move(tokens), std::move(source));
}

void TokenData::write_llmc_bin(const std::string& path) const {
  if (tokens_.empty() || tokens_.size() > static_cast<std::size_t>(INT32_MAX)) {
    throw common::UsageError("cannot write " + std::to_string(tokens_.size()) + " tokens of " +
                                 source_ + " to '" + path + "'",
                             "an llm.c token file holds 1 to 2^31 - 1 tokens");
  }
  std::int32_t header[kLlmcHeaderWords] = {};
  header[0] = kLlmcMagic;
  header[1] = kLlmcVersion;
  header[2] = static_cast<std::int32_t>(tokens_.size());
  common::AtomicFile out(path);
  out.write(header, sizeof(header));
  out.write(tokens_.data(), tokens_.size() * sizeof(std::uint16_t));
  out.commit();
}

std::pair<TokenData, TokenData> TokenData::split(double valid_fraction) const {
  if (!(valid_fraction >= 0.0 && valid_fraction < 1.0)) {
    throw common::UsageError(
        "validation fraction " + std::to_string(valid_fraction) + " is outside [0, 1)",
        "pass e.g. 0.1 to hold out the last 10% of the tokens");
  }
  const auto n = static_cast<std::int64_t>(tokens_.size());
  const auto n_valid =
      static_cast<std::int64_t>(std::llround(static_cast<double>(n) * valid_fraction));
  const auto cut = tokens_.begin() + (n - n_valid);
  return {TokenData({tokens_.begin(), cut}, source_ + " (train)"),
          TokenData({cut, tokens_.end()}, source_ + " (valid)")};
}

std::pair<at::Tensor, at::Tensor> TokenData::batch(std::uint64_t seed, std::int64_t index,
                                                   std::int64_t batch, std::int64_t seq) const {
  if (batch < 1 || seq < 1 || index < 0) {
    throw common::UsageError("batch " + std::to_string(batch) + " x seq " + std::to_string(seq) +
                                 " at index " + std::to_string(index) +
                                 " is not a valid window request",
                             "batch and seq must be at least 1, index at least 0");
  }
  const auto n = static_cast<std::int64_t>(tokens_.size());
  if (n < seq + 1) {
    throw common::UsageError(source_ + " has " + std::to_string(n) +
                                 " tokens, fewer than seq + 1 = " + std::to_string(seq + 1),
                             "use a shorter --seq, more data, or a smaller validation fraction");
  }
  const auto starts = static_cast<std::uint64_t>(n - seq);  // valid window starts: [0, n - seq)
  at::Tensor inputs = at::empty({batch, seq}, at::kLong);
  at::Tensor targets = at::empty({batch, seq}, at::kLong);
  auto* in = inputs.data_ptr<std::int64_t>();   // [batch, seq]
  auto* tg = targets.data_ptr<std::int64_t>();  // [batch, seq]
  const std::uint64_t batch_key = mix64(mix64(seed) ^ static_cast<std::uint64_t>(index));
  for (std::int64_t r = 0; r < batch; ++r) {
    const std::uint64_t start =
        draw_below(mix64(batch_key + static_cast<std::uint64_t>(r)), starts);
    const std::uint16_t* window = tokens_.data() + start;
    for (std::int64_t j = 0; j < seq; ++j) {
      in[r * seq + j] = window[j];
      tg[r * seq + j] = window[j + 1];
    }
  }
  return {inputs, targets};
}

}  // namespace sparsetrain::fuyou
