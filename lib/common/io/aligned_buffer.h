// A page-aligned host buffer for O_DIRECT I/O, pinned where the machine allows it: registered with
// CUDA (cudaHostRegister) when sparsetrain is built with CUDA and a device is present, else locked
// with mlock when RLIMIT_MEMLOCK allows, else left pageable (pinning is an optimisation, never a
// requirement). Not a tensor: the store and the engine deal in raw bytes.
#pragma once

#include <cstddef>

namespace sparsetrain::common::io {

// O_DIRECT wants offsets, lengths and buffer addresses that are multiples of the logical block
// size; 4096 covers every disk we meet (512 B and 4 KiB sectors).
constexpr std::size_t kIoAlignment = 4096;

constexpr std::size_t align_up(std::size_t bytes, std::size_t alignment = kIoAlignment) {
  return (bytes + alignment - 1) / alignment * alignment;
}

enum class PinKind { kNone, kMlock, kCuda };
const char* pin_kind_name(PinKind kind);

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // `bytes` is rounded up to a multiple of kIoAlignment; the memory is zero-filled. Throws
  // RunError when the allocation fails.
  explicit AlignedBuffer(std::size_t bytes, bool pin = true);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }  // bytes, multiple of kIoAlignment
  PinKind pin_kind() const { return pin_; }

 private:
  void release();
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  PinKind pin_ = PinKind::kNone;
};

}  // namespace sparsetrain::common::io
