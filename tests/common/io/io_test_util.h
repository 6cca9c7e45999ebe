// Helpers shared by the I/O tests: a temporary directory removed on scope exit, and a
// deterministic byte pattern (splitmix64 of the position and a seed) to fill and check buffers.
#pragma once

#include <sys/vfs.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace sparsetrain::test {

class TempDir {
 public:
  explicit TempDir(const std::string& parent = "/tmp") {
    std::string templ = parent + "/st-io-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) std::abort();
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const {
    std::filesystem::create_directories(path_ + "/" + name);
    return path_ + "/" + name;
  }

 private:
  std::string path_;
};

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Byte i of pattern `seed`: byte (i % 8) of splitmix64(i / 8 + seed * 2^40).
inline void fill_pattern(void* dst, std::size_t bytes, std::uint64_t seed,
                         std::uint64_t start = 0) {
  auto* out = static_cast<unsigned char*>(dst);
  for (std::size_t i = 0; i < bytes; ++i) {
    const std::uint64_t pos = start + i;
    const std::uint64_t word = splitmix64(pos / 8 + (seed << 40));
    out[i] = static_cast<unsigned char>(word >> (8 * (pos % 8)));
  }
}

// Fast fill for large buffers whose start is a multiple of 8 (same bytes as fill_pattern).
inline void fill_pattern_fast(void* dst, std::size_t bytes, std::uint64_t seed) {
  auto* out = static_cast<unsigned char*>(dst);
  std::size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    const std::uint64_t word = splitmix64(i / 8 + (seed << 40));
    std::memcpy(out + i, &word, 8);  // little-endian: byte k = word >> 8k
  }
  fill_pattern(out + i, bytes - i, seed, i);
}

inline bool is_tmpfs(const std::string& path) {
  struct statfs s {};
  return ::statfs(path.c_str(), &s) == 0 && s.f_type == 0x01021994;  // TMPFS_MAGIC
}

}  // namespace sparsetrain::test
