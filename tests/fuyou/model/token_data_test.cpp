// TokenData: llm.c .bin files built byte by byte here (the layout of llm.c's write_datafile), the
// byte tokenizer, the split, and the statistics and determinism of batch sampling.
#include "fuyou/model/token_data.h"

#include <ATen/ATen.h>
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "fuyou/test_util.h"

using sparsetrain::fuyou::TokenData;
using namespace fuyou_test;

namespace {

// An llm.c file by hand: 256 little-endian int32 words (magic, version, count, zeros), then
// `width`-byte little-endian entries (2: GPT-2 tokens, 4: Llama 3 tokens, 1: a loss mask).
std::string llmc_bytes(std::int32_t magic, std::int32_t version, std::int32_t count,
                       const std::vector<std::uint32_t>& tokens, int width = 2) {
  std::string bytes(1024 + static_cast<std::size_t>(width) * tokens.size(), '\0');
  const std::int32_t words[3] = {magic, version, count};
  for (int w = 0; w < 3; ++w) {
    for (int b = 0; b < 4; ++b) {
      bytes[static_cast<std::size_t>(4 * w + b)] =
          static_cast<char>((static_cast<std::uint32_t>(words[w]) >> (8 * b)) & 0xff);
    }
  }
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    for (int b = 0; b < width; ++b) {
      bytes[1024 + static_cast<std::size_t>(width) * i + static_cast<std::size_t>(b)] =
          static_cast<char>((tokens[i] >> (8 * b)) & 0xff);
    }
  }
  return bytes;
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {(std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()};
}

// Tokens 0, 1, ..., n-1: a window's first input token is its start position.
TokenData counting_data(int n, std::vector<std::uint8_t> mask = {}) {
  std::vector<std::uint32_t> tokens(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) tokens[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>(i);
  return TokenData::from_tokens(tokens, "counting", std::move(mask));
}

}  // namespace

TEST_CASE("an llm.c token file written byte by byte reads back its tokens and vocabulary") {
  auto dir = fresh_dir("tok");
  const std::vector<std::uint32_t> tokens = {50256, 0, 1, 258, 65535, 7};
  write_bytes(dir / "a.bin", llmc_bytes(20240520, 1, 6, tokens));
  TokenData data = TokenData::from_llmc_bin((dir / "a.bin").string());
  CHECK(data.tokens() == tokens);
  CHECK(data.size() == 6);
  CHECK(data.vocab_needed() == 65536);
  CHECK(data.source() == (dir / "a.bin").string());
  fs::remove_all(dir);
}

TEST_CASE("write_llmc_bin produces exactly llm.c's byte layout") {
  auto dir = fresh_dir("tokw");
  const std::vector<std::uint32_t> tokens = {3, 1, 4, 1, 5, 9, 2, 6};
  TokenData::from_tokens(tokens).write_llmc_bin((dir / "w.bin").string());
  std::ifstream in(dir / "w.bin", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(bytes == llmc_bytes(20240520, 1, 8, tokens));
  fs::remove_all(dir);
}

TEST_CASE("llm.c files with a bad magic, version, count or size are usage errors naming the file") {
  auto dir = fresh_dir("tokbad");
  const std::vector<std::uint32_t> tokens = {1, 2, 3, 4};
  const std::string path = (dir / "bad.bin").string();

  write_bytes(path, llmc_bytes(20240521, 1, 4, tokens));
  check_usage_error([&] { TokenData::from_llmc_bin(path); }, {path, "magic 20240521"});

  write_bytes(path, llmc_bytes(20240520, 2, 4, tokens));
  check_usage_error([&] { TokenData::from_llmc_bin(path); }, {path, "version 2"});

  write_bytes(path, llmc_bytes(20240801, 1, 4, tokens, 4));  // Llama 3's magic, GPT-2's version
  check_usage_error([&] { TokenData::from_llmc_bin(path); }, {path, "20240801 version 1"});

  write_bytes(path, llmc_bytes(20240801, 7, 4, tokens, 2));  // uint16 entries, uint32's header
  check_usage_error([&] { TokenData::from_llmc_bin(path); }, {path, "4 tokens", "1040 bytes"});

  write_bytes(path, llmc_bytes(20240520, 1, 5, tokens));  // header claims one token more
  check_usage_error([&] { TokenData::from_llmc_bin(path); }, {path, "5 tokens", "1032 bytes"});

  write_bytes(path, llmc_bytes(20240520, 1, 3, tokens));  // trailing bytes
  check_usage_error([&] { TokenData::from_llmc_bin(path); }, {path, "3 tokens"});

  write_bytes(path, llmc_bytes(20240520, 1, -1, tokens));
  check_usage_error([&] { TokenData::from_llmc_bin(path); }, {path, "-1 tokens"});

  write_bytes(path, llmc_bytes(20240520, 1, 0, {}));
  check_usage_error([&] { TokenData::from_llmc_bin(path); }, {path, "0 tokens"});

  write_bytes(path, std::string(100, '\0'));
  check_usage_error([&] { TokenData::from_llmc_bin(path); }, {path, "1024-byte"});

  check_usage_error([&] { TokenData::from_llmc_bin((dir / "missing.bin").string()); },
                    {"missing.bin"});
  fs::remove_all(dir);
}

TEST_CASE("the byte tokenizer maps every byte, including 0 and 255, to its value") {
  auto dir = fresh_dir("text");
  std::string text = "Hi\n";
  text += '\0';
  text += static_cast<char>(0xff);
  text += static_cast<char>(0xc3);  // first byte of UTF-8 'é'
  write_bytes(dir / "t.txt", text);
  TokenData data = TokenData::from_text_file((dir / "t.txt").string());
  CHECK(data.tokens() == std::vector<std::uint32_t>{72, 105, 10, 0, 255, 195});
  CHECK(data.vocab_needed() == 256);
  CHECK(TokenData::from_bytes("aa").vocab_needed() == 'a' + 1);
  write_bytes(dir / "empty.txt", "");
  check_usage_error([&] { TokenData::from_text_file((dir / "empty.txt").string()); },
                    {"empty.txt", "empty"});
  fs::remove_all(dir);
}

TEST_CASE("split keeps the last fraction for validation without overlap") {
  TokenData data = counting_data(1000);
  auto [train, valid] = data.split(0.1);
  CHECK(train.size() == 900);
  CHECK(valid.size() == 100);
  CHECK(train.tokens().back() == 899);
  CHECK(valid.tokens().front() == 900);
  CHECK(valid.source() == "counting (valid)");
  auto [all, none] = data.split(0.0);
  CHECK(all.size() == 1000);
  CHECK(none.size() == 0);
  check_usage_error([&] { data.split(1.0); }, {"1.0"});
  check_usage_error([&] { data.split(-0.5); }, {"-0.5"});
  check_usage_error([&] { none.batch(0, 0, 1, 4); }, {"counting (valid)", "0 tokens"});
}

TEST_CASE("a batch holds contiguous windows with targets shifted by one") {
  TokenData data = counting_data(5000);
  auto [inputs, targets] = data.batch(/*seed=*/7, /*index=*/3, /*batch=*/8, /*seq=*/64);
  REQUIRE(inputs.sizes() == at::IntArrayRef({8, 64}));
  REQUIRE(targets.sizes() == at::IntArrayRef({8, 64}));
  CHECK((inputs.scalar_type() == at::kLong && targets.scalar_type() == at::kLong));
  for (int r = 0; r < 8; ++r) {
    const std::int64_t start = inputs[r][0].item<std::int64_t>();
    CHECK(start >= 0);
    CHECK(start + 64 < 5000);
    CHECK(at::equal(inputs[r], at::arange(start, start + 64, at::kLong)));
    CHECK(at::equal(targets[r], at::arange(start + 1, start + 65, at::kLong)));
  }
}

TEST_CASE("the same seed and index give the same batch; another index or seed gives another") {
  TokenData data = counting_data(20000);
  auto a = data.batch(42, 0, 4, 16);
  auto b = data.batch(42, 0, 4, 16);
  CHECK(at::equal(a.first, b.first));
  CHECK(at::equal(a.second, b.second));
  CHECK_FALSE(at::equal(a.first, data.batch(42, 1, 4, 16).first));
  CHECK_FALSE(at::equal(a.first, data.batch(43, 0, 4, 16).first));
  // Row r does not depend on the batch size: a batch of 2 is the first rows of the batch of 4.
  CHECK(at::equal(data.batch(42, 0, 2, 16).first, a.first.slice(0, 0, 2)));
}

TEST_CASE("window starts are uniform over every valid position, including both ends") {
  // 12 tokens, seq 4: starts 0..7 (8 positions). 4000 windows: chi-square with 7 degrees of
  // freedom; 24.3 is its 0.999 quantile, so a correct sampler fails this 1 time in 1000 seeds
  // (the seed is fixed, so the test is deterministic).
  TokenData data = counting_data(12);
  std::map<std::int64_t, int> counts;
  for (int index = 0; index < 500; ++index) {
    auto [inputs, targets] = data.batch(1, index, 8, 4);
    for (int r = 0; r < 8; ++r) ++counts[inputs[r][0].item<std::int64_t>()];
  }
  REQUIRE(counts.size() == 8);
  CHECK(counts.begin()->first == 0);
  CHECK(counts.rbegin()->first == 7);
  double chi2 = 0;
  for (const auto& [start, count] : counts) chi2 += std::pow(count - 500.0, 2) / 500.0;
  INFO("chi-square = " << chi2);
  CHECK(chi2 < 24.3);
}

TEST_CASE("data with exactly seq + 1 tokens has one window; fewer is a usage error") {
  TokenData data = counting_data(9);
  auto [inputs, targets] = data.batch(5, 0, 3, 8);
  CHECK(at::equal(inputs, at::arange(0, 8, at::kLong).expand({3, 8})));
  check_usage_error([&] { data.batch(5, 0, 1, 9); }, {"counting", "9 tokens", "seq + 1 = 10"});
  check_usage_error([&] { data.batch(5, 0, 0, 4); }, {"batch 0"});
  check_usage_error([&] { data.batch(5, -1, 1, 4); }, {"index -1"});
}

TEST_CASE("a Llama 3 token file (llm.c magic 20240801, version 7) reads its uint32 tokens") {
  auto dir = fresh_dir("tok32");
  const std::vector<std::uint32_t> tokens = {128000, 9906, 0, 128255, 65536, 7};
  write_bytes(dir / "l.bin", llmc_bytes(20240801, 7, 6, tokens, 4));
  const TokenData data = TokenData::from_llmc_bin((dir / "l.bin").string());
  CHECK(data.tokens() == tokens);
  CHECK(data.vocab_needed() == 128256);
  CHECK_FALSE(data.has_loss_mask());
  // Written back: the same bytes (ids past 16 bits: version 7).
  data.write_llmc_bin((dir / "w.bin").string());
  CHECK(file_bytes(dir / "w.bin") == llmc_bytes(20240801, 7, 6, tokens, 4));
  fs::remove_all(dir);
}

TEST_CASE("a loss mask turns its 0s into ignored targets, follows the split and round-trips") {
  // Tokens 0..99; the mask trains tokens 50..99 only: a target t is kept where t >= 50.
  std::vector<std::uint8_t> mask(100, 0);
  for (int i = 50; i < 100; ++i) mask[static_cast<std::size_t>(i)] = 1;
  const TokenData data = counting_data(100, mask);
  CHECK(data.has_loss_mask());
  CHECK(data.trained_tokens() == 50);
  auto [inputs, targets] = data.batch(3, 0, 16, 8);
  int ignored = 0, kept = 0;
  for (std::int64_t i = 0; i < inputs.numel(); ++i) {
    const std::int64_t target = targets.view(-1)[i].item<std::int64_t>();
    const std::int64_t next = inputs.view(-1)[i].item<std::int64_t>() + 1;
    if (next >= 50) {
      CHECK(target == next);
      ++kept;
    } else {
      CHECK(target == sparsetrain::fuyou::kIgnoredTarget);
      ++ignored;
    }
  }
  CHECK(ignored > 0);
  CHECK(kept > 0);
  auto [train, valid] = data.split(0.3);
  CHECK(train.trained_tokens() == 20);  // 50..69
  CHECK(valid.trained_tokens() == 30);  // 70..99
  CHECK(valid.batch(1, 0, 4, 8).second.ne(sparsetrain::fuyou::kIgnoredTarget).all().item<bool>());

  // Written as a token file and its mask, read back: the same batches.
  auto dir = fresh_dir("tokmask");
  data.write_llmc_bin((dir / "m.bin").string(), (dir / "m.mask").string());
  const TokenData back =
      TokenData::from_llmc_bin((dir / "m.bin").string()).with_loss_mask((dir / "m.mask").string());
  CHECK(back.trained_tokens() == 50);
  CHECK(at::equal(back.batch(3, 0, 16, 8).second, targets));
  CHECK(file_bytes(dir / "m.mask") ==
        llmc_bytes(0x4B53414D, 1, 100, std::vector<std::uint32_t>(mask.begin(), mask.end()), 1));
  fs::remove_all(dir);
}

TEST_CASE("a loss mask of another length, a byte past 1 or no trained token is refused") {
  auto dir = fresh_dir("tokmaskbad");
  const std::string tokens = (dir / "t.bin").string(), mask = (dir / "t.mask").string();
  write_bytes(tokens, llmc_bytes(20240520, 1, 4, {1, 2, 3, 4}));
  const TokenData data = TokenData::from_llmc_bin(tokens);
  write_bytes(mask, llmc_bytes(0x4B53414D, 1, 3, {1, 1, 1}, 1));
  check_usage_error([&] { data.with_loss_mask(mask); }, {mask, "3 entries", "4 tokens"});
  write_bytes(mask, llmc_bytes(0x4B53414D, 1, 4, {1, 2, 1, 1}, 1));
  check_usage_error([&] { data.with_loss_mask(mask); }, {mask, "byte 2 at token 1"});
  write_bytes(mask, llmc_bytes(0x4B53414D, 1, 4, {0, 0, 0, 0}, 1));
  check_usage_error([&] { data.with_loss_mask(mask); }, {mask, "masks every token"});
  write_bytes(mask, llmc_bytes(20240520, 1, 4, {1, 1, 1, 1}, 1));
  check_usage_error([&] { data.with_loss_mask(mask); }, {mask, "magic 20240520"});
  fs::remove_all(dir);
}
