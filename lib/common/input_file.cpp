#include "common/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/error.h"

namespace sparsetrain::common {

InputFile::InputFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw_path_error("cannot open", path_, errno, "check the path");
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    throw_path_error("cannot stat", path_, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw UsageError("'" + path_ + "' is not a regular file", "pass a file, not a directory");
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

void InputFile::read_exact(std::uint64_t offset, void* dst, std::size_t bytes) const {
  auto* out = static_cast<char*>(dst);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(fd_, out + done, bytes - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_path_error("cannot read", path_, errno);
    }
    if (n == 0) {
      throw RunError("'" + path_ + "' ended after " + std::to_string(offset + done) +
                         " bytes while reading " + std::to_string(bytes) + " bytes at offset " +
                         std::to_string(offset),
                     "was the file truncated while being read?");
    }
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace sparsetrain::common
