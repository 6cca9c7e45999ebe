// Token files, loss masks and the train/validation split; torch-free (the fuzz harness builds it
// alone). The sampled batches, as tensors, are token_batches.cpp.
#include "fuyou/model/token_data.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/mapped_file.h"

namespace sparsetrain::fuyou {

namespace {

// llm.c data files (dev/data/data_common.py HEADERS_INFO): 256 little-endian int32 header words.
constexpr std::int32_t kGpt2Magic = 20240520, kGpt2Version = 1;      // uint16 tokens
constexpr std::int32_t kLlama3Magic = 20240801, kLlama3Version = 7;  // uint32 tokens
constexpr std::int64_t kLlmcHeaderWords = 256;
constexpr std::int64_t kLlmcHeaderBytes = kLlmcHeaderWords * 4;

// The header of a mapped llm.c-style file (tokens or mask): its count after checking magic,
// version and size (`width` bytes per entry). `kind`, `unit` (what it counts) and `hint` for
// the messages.
std::int64_t checked_count(const common::MappedFile& file, std::int32_t magic, std::int32_t version,
                           std::int64_t width, const std::string& kind, const std::string& unit,
                           const std::string& hint) {
  const std::string& path = file.path();
  if (file.size() < static_cast<std::uint64_t>(kLlmcHeaderBytes)) {
    throw common::UsageError(kind + " '" + path + "' has " + std::to_string(file.size()) +
                                 " bytes, less than the 1024-byte header",
                             hint);
  }
  std::int32_t header[3];
  std::memcpy(header, file.data(), sizeof header);
  if (header[0] != magic || header[1] != version) {
    throw common::UsageError(kind + " '" + path + "' has magic " + std::to_string(header[0]) +
                                 " version " + std::to_string(header[1]) + ", not " +
                                 std::to_string(magic) + " version " + std::to_string(version),
                             hint);
  }
  const std::int64_t count = header[2];
  const std::uint64_t expected =
      kLlmcHeaderBytes + static_cast<std::uint64_t>(width * std::max<std::int64_t>(count, 0));
  if (count <= 0 || file.size() != expected) {
    throw common::UsageError(kind + " '" + path + "' header says " + std::to_string(count) + " " +
                                 unit + " (" + std::to_string(expected) +
                                 " bytes) but the file has " + std::to_string(file.size()) +
                                 " bytes",
                             "the file is truncated or not what its header says");
  }
  return count;
}

}  // namespace

// Tokens of `width` bytes (2 or 4) and an optional 0/1 byte per token: owned, or in mapped files.
struct TokenData::Storage {
  std::shared_ptr<const common::MappedFile> token_file, mask_file;
  std::vector<std::uint32_t> owned_tokens;
  std::vector<std::uint8_t> owned_mask;
  const std::byte* tokens = nullptr;
  int width = 4;
  const std::uint8_t* mask = nullptr;  // null: every target trained
  std::int64_t count = 0;

  std::int64_t token(std::int64_t i) const {
    if (width == 2) {
      std::uint16_t t;
      std::memcpy(&t, tokens + 2 * i, 2);
      return t;
    }
    std::uint32_t t;
    std::memcpy(&t, tokens + 4 * i, 4);
    return t;
  }
};

TokenData::TokenData(std::shared_ptr<const Storage> storage, std::int64_t first, std::int64_t size,
                     std::string source)
    : storage_(std::move(storage)), first_(first), size_(size), source_(std::move(source)) {
  std::int64_t max_token = -1;
  for (std::int64_t i = 0; i < size_; ++i) max_token = std::max(max_token, token(i));
  vocab_needed_ = max_token + 1;
  if (!storage_->mask) {
    trained_ = size_;
  } else {
    for (std::int64_t i = 0; i < size_; ++i) trained_ += storage_->mask[first_ + i];
  }
}

std::int64_t TokenData::token(std::int64_t i) const { return storage_->token(first_ + i); }

std::uint8_t TokenData::mask_at(std::int64_t i) const {
  return storage_->mask ? storage_->mask[first_ + i] : 1;
}

bool TokenData::has_loss_mask() const { return storage_->mask != nullptr; }

std::vector<std::uint32_t> TokenData::tokens() const {
  std::vector<std::uint32_t> out(static_cast<std::size_t>(size_));
  for (std::int64_t i = 0; i < size_; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>(token(i));
  return out;
}

TokenData TokenData::from_llmc_bin(const std::string& path) {
  auto file = std::make_shared<const common::MappedFile>(path);
  const std::string hint =
      "expected an llm.c token file (scripts/prepare_tokens.py or llm.c's dev/data/*.py write "
      "them)";
  std::int32_t head[2] = {0, 0};
  if (file->size() >= sizeof head) std::memcpy(head, file->data(), sizeof head);
  const bool llama3 = head[0] == kLlama3Magic;
  if (head[0] == kGpt2Magic && head[1] != kGpt2Version) {
    throw common::UsageError("token file '" + path + "' has version " + std::to_string(head[1]) +
                                 "; llm.c's magic " + std::to_string(kGpt2Magic) +
                                 " goes with version 1 (uint16 tokens)",
                             hint);
  }
  auto storage = std::make_shared<Storage>();
  storage->width = llama3 ? 4 : 2;
  storage->count = checked_count(*file, llama3 ? kLlama3Magic : kGpt2Magic,
                                 llama3 ? kLlama3Version : kGpt2Version, storage->width,
                                 "token file", "tokens", hint);
  storage->tokens = file->data() + kLlmcHeaderBytes;
  storage->token_file = std::move(file);
  const std::int64_t count = storage->count;
  return TokenData(std::move(storage), 0, count, path);
}

TokenData TokenData::from_text_file(const std::string& path) {
  common::MappedFile file(path);
  if (file.size() == 0) {
    throw common::UsageError("text file '" + path + "' is empty", "pass a file with some text");
  }
  return from_bytes(std::string(reinterpret_cast<const char*>(file.data()), file.size()), path);
}

TokenData TokenData::from_bytes(const std::string& text, std::string source) {
  std::vector<std::uint32_t> tokens(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) tokens[i] = static_cast<unsigned char>(text[i]);
  return from_tokens(std::move(tokens), std::move(source));
}

TokenData TokenData::from_tokens(std::vector<std::uint32_t> tokens, std::string source,
                                 std::vector<std::uint8_t> mask) {
  ST_ASSERT(mask.empty() || mask.size() == tokens.size(), "a loss mask byte per token");
  auto storage = std::make_shared<Storage>();
  storage->owned_tokens = std::move(tokens);
  storage->owned_mask = std::move(mask);
  storage->tokens = reinterpret_cast<const std::byte*>(storage->owned_tokens.data());
  storage->width = 4;
  storage->mask = storage->owned_mask.empty() ? nullptr : storage->owned_mask.data();
  storage->count = static_cast<std::int64_t>(storage->owned_tokens.size());
  const std::int64_t count = storage->count;
  return TokenData(std::move(storage), 0, count, std::move(source));
}

TokenData TokenData::with_loss_mask(const std::string& path) const {
  auto file = std::make_shared<const common::MappedFile>(path);
  const std::string hint = "write the tokens and their mask together (scripts/prepare_tokens.py)";
  const std::int64_t count =
      checked_count(*file, kLossMaskMagic, kLossMaskVersion, 1, "loss mask", "entries", hint);
  if (count != storage_->count || first_ != 0 || size_ != storage_->count) {
    throw common::UsageError("loss mask '" + path + "' has " + std::to_string(count) +
                                 " entries but '" + source_ + "' has " +
                                 std::to_string(storage_->count) + " tokens",
                             hint);
  }
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(file->data() + kLlmcHeaderBytes);
  std::int64_t trained = 0;
  for (std::int64_t i = 0; i < count; ++i) {
    if (bytes[i] > 1) {
      throw common::UsageError("loss mask '" + path + "' has byte " + std::to_string(bytes[i]) +
                                   " at token " + std::to_string(i) +
                                   " (only 0 and 1 mean something)",
                               hint);
    }
    trained += bytes[i];
  }
  if (trained == 0) {
    throw common::UsageError("loss mask '" + path + "' masks every token: nothing to train on",
                             "check the data's prompt and completion fields");
  }
  auto storage = std::make_shared<Storage>(*storage_);
  storage->mask_file = std::move(file);
  storage->mask = bytes;
  return TokenData(std::move(storage), first_, size_, source_);
}

void TokenData::write_llmc_bin(const std::string& path, const std::string& mask_path) const {
  if (size_ == 0 || size_ > static_cast<std::int64_t>(INT32_MAX)) {
    throw common::UsageError(
        "cannot write " + std::to_string(size_) + " tokens of " + source_ + " to '" + path + "'",
        "an llm.c token file holds 1 to 2^31 - 1 tokens");
  }
  ST_ASSERT(has_loss_mask() == !mask_path.empty(), "a masked file's mask needs a path, and back");
  const bool wide = vocab_needed_ > 65536;
  std::int32_t header[kLlmcHeaderWords] = {};
  header[0] = wide ? kLlama3Magic : kGpt2Magic;
  header[1] = wide ? kLlama3Version : kGpt2Version;
  header[2] = static_cast<std::int32_t>(size_);
  common::AtomicFile out(path);
  out.write(header, sizeof(header));
  if (wide) {
    const std::vector<std::uint32_t> all = tokens();
    out.write(all.data(), all.size() * sizeof(std::uint32_t));
  } else {
    std::vector<std::uint16_t> narrow(static_cast<std::size_t>(size_));
    for (std::int64_t i = 0; i < size_; ++i)
      narrow[static_cast<std::size_t>(i)] = static_cast<std::uint16_t>(token(i));
    out.write(narrow.data(), narrow.size() * sizeof(std::uint16_t));
  }
  if (!has_loss_mask()) {
    out.commit();
    return;
  }
  common::AtomicFile mask(mask_path);
  header[0] = kLossMaskMagic;
  header[1] = kLossMaskVersion;
  mask.write(header, sizeof(header));
  mask.write(storage_->mask + first_, static_cast<std::size_t>(size_));
  mask.commit();
  out.commit();
}

std::pair<TokenData, TokenData> TokenData::split(double valid_fraction) const {
  if (!(valid_fraction >= 0.0 && valid_fraction < 1.0)) {
    throw common::UsageError(
        "validation fraction " + std::to_string(valid_fraction) + " is outside [0, 1)",
        "pass e.g. 0.1 to hold out the last 10% of the tokens");
  }
  const auto n_valid =
      static_cast<std::int64_t>(std::llround(static_cast<double>(size_) * valid_fraction));
  return {TokenData(storage_, first_, size_ - n_valid, source_ + " (train)"),
          TokenData(storage_, first_ + size_ - n_valid, n_valid, source_ + " (valid)")};
}

}  // namespace sparsetrain::fuyou
