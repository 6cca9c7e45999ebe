#include "common/io/aligned_buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#ifdef SPARSETRAIN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#include "common/error.h"
#include "common/log.h"

namespace sparsetrain::common::io {

namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;

#ifdef SPARSETRAIN_HAVE_CUDA
bool cuda_device_present() {
  static const bool present = [] {
    int count = 0;
    const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
    cudaGetLastError();  // clear the sticky "no device" error
    return ok;
  }();
  return present;
}
#endif

}  // namespace

const char* pin_kind_name(PinKind kind) {
  switch (kind) {
    case PinKind::kCuda:
      return "cuda";
    case PinKind::kMlock:
      return "mlock";
    case PinKind::kNone:
      break;
  }
  return "none";
}

AlignedBuffer::AlignedBuffer(std::size_t bytes, bool pin) {
  size_ = align_up(bytes == 0 ? 1 : bytes);
  // Large buffers: 2 MiB aligned and backed by transparent huge pages where the kernel allows, so
  // a 1 MiB O_DIRECT I/O is one physically contiguous segment instead of 256 pages (virtio-blk
  // takes 254 segments per request here: a 4 KiB-paged 1 MiB I/O splits in two).
  const std::size_t alignment = size_ >= kHugePage ? kHugePage : kIoAlignment;
  if (alignment == kHugePage) size_ = align_up(size_, kHugePage);
  void* p = nullptr;
  if (::posix_memalign(&p, alignment, size_) != 0) {
    throw RunError(cat("cannot allocate an aligned I/O buffer of ", size_, " bytes"),
                   "lower --block/--qd or free memory");
  }
  data_ = static_cast<std::byte*>(p);
  if (alignment == kHugePage) ::madvise(data_, size_, MADV_HUGEPAGE);  // best effort
  std::memset(data_, 0, size_);
  if (!pin) return;
#ifdef SPARSETRAIN_HAVE_CUDA
  if (cuda_device_present() &&
      cudaHostRegister(data_, size_, cudaHostRegisterDefault) == cudaSuccess) {
    pin_ = PinKind::kCuda;
    return;
  }
  cudaGetLastError();
#endif
  if (::mlock(data_, size_) == 0) pin_ = PinKind::kMlock;
}

void AlignedBuffer::release() {
  if (data_ == nullptr) return;
#ifdef SPARSETRAIN_HAVE_CUDA
  if (pin_ == PinKind::kCuda) cudaHostUnregister(data_);
#endif
  if (pin_ == PinKind::kMlock) ::munlock(data_, size_);
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
  pin_ = PinKind::kNone;
}

AlignedBuffer::~AlignedBuffer() { release(); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      pin_(std::exchange(other.pin_, PinKind::kNone)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    pin_ = std::exchange(other.pin_, PinKind::kNone);
  }
  return *this;
}

}  // namespace sparsetrain::common::io
