#include "common/io/probe.h"

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace sparsetrain::common::io {

ProbeResult probe_io_uring() {
  io_uring ring{};
  const int rc = io_uring_queue_init(/*entries=*/2, &ring, /*flags=*/0);
  if (rc < 0) return {false, std::strerror(-rc), -rc};
  io_uring_queue_exit(&ring);
  return {true, "io_uring_setup succeeded", 0};
}

ProbeResult probe_o_direct(const std::string& dir) {
  std::string path = dir + "/.sparsetrain-odirect-XXXXXX";
  int fd = ::mkstemp(path.data());
  if (fd < 0) return {false, std::string("cannot create a file: ") + std::strerror(errno), errno};
  ::close(fd);
  fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  const int open_err = errno;
  ProbeResult result;
  if (fd < 0) {
    result = {false, std::string("open with O_DIRECT: ") + std::strerror(open_err), open_err};
  } else {
    constexpr std::size_t kBlock = 4096;
    void* buf = std::aligned_alloc(kBlock, kBlock);
    std::memset(buf, 0, kBlock);
    const ssize_t n = ::pwrite(fd, buf, kBlock, 0);
    const int write_err = errno;
    std::free(buf);
    ::close(fd);
    result = n == static_cast<ssize_t>(kBlock)
                 ? ProbeResult{true, "4 KiB O_DIRECT write succeeded"}
                 : ProbeResult{false, std::string("O_DIRECT write: ") + std::strerror(write_err),
                               write_err};
  }
  ::unlink(path.c_str());
  return result;
}

}  // namespace sparsetrain::common::io
