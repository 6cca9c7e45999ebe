// safetensors: files built byte by byte here (the format spec), bit-exact round trips including NaN
// payloads and subnormals, and one malformed file per check the reader must make.
#include "fuyou/model/safetensors.h"

#include <ATen/ATen.h>
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>

#include <cstring>

#include "fuyou/test_util.h"

using namespace sparsetrain::fuyou;
using namespace fuyou_test;

namespace {

// 8-byte little-endian length, header text as given (no padding), then data.
std::string st_bytes(const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return bytes + header + data;
}

// Random bit patterns of every kind (NaNs with payloads, infinities, subnormals, -0) as `dtype`.
at::Tensor random_bits(at::IntArrayRef shape, at::ScalarType dtype, int seed) {
  at::manual_seed(seed);
  if (dtype == at::kFloat) {
    return at::randint(INT32_MIN, INT32_MAX, shape, at::kInt).view(at::kFloat);
  }
  return at::randint(INT16_MIN, INT16_MAX, shape, at::kShort).view(dtype);
}

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         (a.nbytes() == 0 ||
          std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0);
}

std::string raw(const void* p, std::size_t n) {
  return std::string(static_cast<const char*>(p), n);
}

}  // namespace

TEST_CASE("a file built byte by byte from the format spec reads back its tensors and metadata") {
  auto dir = fresh_dir("st-spec");
  const float f32[2] = {1.0f, -2.5f};
  const std::uint16_t bf16[3] = {0x3F80, 0xC000, 0x7F80};  // 1, -2, +inf
  const std::uint16_t f16[1] = {0x3C00};                   // 1
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"BF16","shape":[3,1],"data_offsets":[8,14]},)"
      R"("h":{"dtype":"F16","shape":[],"data_offsets":[14,16]},)"
      R"("z":{"dtype":"F32","shape":[0,5],"data_offsets":[16,16]}})";
  const std::string path = (dir / "spec.safetensors").string();
  write_bytes(path, st_bytes(header, raw(f32, 8) + raw(bf16, 6) + raw(f16, 2)));

  TensorMap t = read_safetensors(path);
  REQUIRE(t.size() == 4);
  CHECK(at::equal(t.at("w"), at::tensor({1.0f, -2.5f})));
  CHECK((t.at("b").scalar_type() == at::kBFloat16));
  CHECK(t.at("b").sizes() == at::IntArrayRef({3, 1}));
  CHECK(at::equal(t.at("b").to(at::kFloat).flatten(),
                  at::tensor({1.0f, -2.0f, std::numeric_limits<float>::infinity()})));
  CHECK(t.at("h").dim() == 0);
  CHECK(t.at("h").item<float>() == 1.0f);
  CHECK(t.at("z").sizes() == at::IntArrayRef({0, 5}));
  CHECK(read_safetensors_metadata(path) == std::map<std::string, std::string>{{"format", "pt"}});
  fs::remove_all(dir);
}

TEST_CASE("a write-read round trip is bit-exact for bf16, fp16 and fp32, any shape") {
  auto dir = fresh_dir("st-round");
  TensorMap in;
  in["a.f32"] = random_bits({17, 3}, at::kFloat, 1);
  in["b.bf16.odd"] =
      random_bits({7}, at::kBFloat16, 2);  // 14 bytes: the f32 after it must still align
  in["c.f16"] = random_bits({2, 3, 5}, at::kHalf, 3);
  in["d.scalar"] = at::tensor(3.5f).reshape({});
  in["e.empty"] = at::empty({0}, at::kBFloat16);
  in["f.transposed"] = random_bits({4, 6}, at::kFloat, 4).t();  // non-contiguous input
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", "12"}};
  const std::string path = (dir / "r.safetensors").string();
  write_safetensors(path, in, meta);

  TensorMap out = read_safetensors(path);
  REQUIRE(out.size() == in.size());
  for (const auto& [name, tensor] : in) {
    INFO(name);
    CHECK(same_bytes(tensor, out.at(name)));
  }
  CHECK(read_safetensors_metadata(path) == meta);
  // The layout the Python package writes: header padded to 8 bytes, every tensor aligned.
  std::ifstream f(path, std::ios::binary);
  std::uint64_t header_len = 0;
  f.read(reinterpret_cast<char*>(&header_len), 8);
  CHECK(header_len % 8 == 0);
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++entries;
  CHECK(entries == 1);  // no temporary left behind
  fs::remove_all(dir);
}

TEST_CASE("the writer refuses unsupported tensors and leaves no file behind") {
  auto dir = fresh_dir("st-wbad");
  const std::string path = (dir / "w.safetensors").string();
  check_usage_error(
      [&] {
        write_safetensors(path, {{"ids", at::zeros({3}, at::kLong)}});
      },
      {"ids", path, "Long"});
  check_usage_error(
      [&] {
        write_safetensors(path, {{"__metadata__", at::zeros({3})}});
      },
      {"__metadata__", "reserved"});
  check_usage_error([&] { write_safetensors(path, {{"u", at::Tensor()}}); }, {"'u'", "undefined"});
  CHECK_FALSE(fs::exists(path));
  check_usage_error(
      [&] {
        write_safetensors((dir / "no/such/dir.safetensors").string(), {{"x", at::zeros({1})}});
      },
      {"no/such/dir.safetensors"});
  fs::remove_all(dir);
}

TEST_CASE("every kind of malformed file is a usage error naming the file and the tensor") {
  auto dir = fresh_dir("st-bad");
  const std::string path = (dir / "bad.safetensors").string();
  const std::string data8(8, '\0');
  auto expect = [&](const std::string& bytes, const std::vector<std::string>& parts) {
    write_bytes(path, bytes);
    std::vector<std::string> all = parts;
    all.insert(all.begin(), path);
    check_usage_error([&] { read_safetensors(path); }, all);
  };
  SUBCASE("shorter than the length field") { expect("abc", {"too short"}); }
  SUBCASE("header length beyond the file") {
    std::string bytes = st_bytes("{}", "");
    bytes[0] = 100;
    expect(bytes, {"header length 100", "beyond"});
  }
  SUBCASE("header not JSON") { expect(st_bytes("{\"w\": [1,", data8), {"not valid JSON"}); }
  SUBCASE("header JSON but not an object") { expect(st_bytes("[1, 2]", ""), {"not an object"}); }
  SUBCASE("entry not an object") {
    expect(st_bytes(R"({"w": 3})", ""), {"'w'", "not a JSON object"});
  }
  SUBCASE("entry without data_offsets") {
    expect(st_bytes(R"({"w":{"dtype":"F32","shape":[2]}})", data8), {"'w'", "data_offsets"});
  }
  SUBCASE("unknown dtype") {
    expect(st_bytes(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", data8),
           {"'w'", "'F64'"});
  }
  SUBCASE("integer dtype") {
    expect(st_bytes(R"({"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", data8),
           {"'ids'", "'I64'"});
  }
  SUBCASE("negative dimension") {
    expect(st_bytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8),
           {"'w'", "[-2]"});
  }
  SUBCASE("shape and byte size disagree") {
    expect(st_bytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8),
           {"'w'", "[3]", "span 8 bytes"});
  }
  SUBCASE("reversed offsets") {
    expect(st_bytes(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data8),
           {"'w'", "reversed"});
  }
  SUBCASE("offsets out of range") {
    expect(st_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data8),
           {"'w'", "[0, 16]", "beyond the 8 bytes"});
  }
  SUBCASE("overlapping tensors") {
    expect(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    data8),
           {"'b'", "overlapping tensor 'a'"});
  }
  SUBCASE("misaligned offsets") {
    expect(st_bytes(R"({"a":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},)"
                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                    std::string(6, '\0')),
           {"'b'", "misaligned", "4-byte F32"});
  }
  SUBCASE("a gap between tensors") {
    expect(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8),
           {"'a'", "unused"});
  }
  SUBCASE("trailing bytes after the last tensor") {
    expect(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data8),
           {"4 bytes of data after the last tensor"});
  }
  SUBCASE("a tensor name twice (the format forbids it; JSON readers would keep one)") {
    expect(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                    R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                    data8),
           {"header names tensor 'a' twice"});
  }
  SUBCASE("metadata that is not strings") {
    expect(st_bytes(R"({"__metadata__":{"step":3}})", ""), {"__metadata__", "'step'"});
  }
  fs::remove_all(dir);
}
