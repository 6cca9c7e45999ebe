// libFuzzer harness for llm.c token files and their loss masks (fuyou/model/token_data.h). The
// first byte picks the case: even, the rest is a token file read by TokenData::from_llmc_bin;
// odd, the rest is the loss mask of a valid 8-token file (TokenData::with_loss_mask). The
// contract: tokens that split, write back and read again unchanged — or a common::UsageError;
// never a crash, hang, sanitizer report or other exception. See run_fuzz.sh.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "fuyou/model/token_data.h"

namespace fs = std::filesystem;
using sparsetrain::fuyou::TokenData;

namespace {

void write_file(const fs::path& path, const void* data, std::size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) std::abort();
}

// What any TokenData read from a file must satisfy.
void check(const TokenData& t, const fs::path& dir) {
  if (t.size() <= 0 || t.trained_tokens() < 0 || t.trained_tokens() > t.size()) std::abort();
  if (t.has_loss_mask() && t.trained_tokens() == 0) std::abort();  // refused at read
  const std::vector<std::uint32_t> tokens = t.tokens();
  std::int64_t vocab = 0;
  for (const std::uint32_t v : tokens) vocab = std::max<std::int64_t>(vocab, std::int64_t{v} + 1);
  if (vocab != t.vocab_needed()) std::abort();
  const auto [train, valid] = t.split(0.25);
  if (train.size() + valid.size() != t.size()) std::abort();
  // Written back (uint16 or uint32 as the ids need) and read again: the same tokens and mask.
  const fs::path bin = dir / "again.bin", mask = dir / "again.mask";
  t.write_llmc_bin(bin.string(), t.has_loss_mask() ? mask.string() : "");
  TokenData again = TokenData::from_llmc_bin(bin.string());
  if (t.has_loss_mask()) again = again.with_loss_mask(mask.string());
  if (again.tokens() != tokens || again.trained_tokens() != t.trained_tokens()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("st-fuzz-tokens-" + std::to_string(::getpid()));
    fs::create_directories(d);
    return d;
  }();
  if (size == 0) return 0;
  const bool mask_case = data[0] % 2 == 1;
  const fs::path input = dir / (mask_case ? "input.mask" : "input.bin");
  write_file(input, data + 1, size - 1);
  try {
    if (!mask_case) {
      check(TokenData::from_llmc_bin(input.string()), dir);
    } else {
      // 8 uint16 tokens, the file format's version 1
      std::vector<std::int32_t> header(256, 0);
      header[0] = 20240520;
      header[1] = 1;
      header[2] = 8;
      const std::uint16_t tokens[8] = {1, 2, 3, 50256, 4, 5, 6, 7};
      const fs::path bin = dir / "valid.bin";
      {
        std::ofstream out(bin, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(header.data()), 1024);
        out.write(reinterpret_cast<const char*>(tokens), sizeof tokens);
      }
      check(TokenData::from_llmc_bin(bin.string()).with_loss_mask(input.string()), dir);
    }
  } catch (const sparsetrain::common::UsageError&) {
  }
  return 0;
}
