#include "fuyou/model/binary_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/atomic_file.h"
#include "common/error.h"

namespace sparsetrain::fuyou {

InputFile::InputFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) common::throw_path_error("cannot open", path_, errno, "check the path");
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    common::throw_path_error("cannot stat", path_, err);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw common::UsageError("'" + path_ + "' is not a regular file",
                             "pass a file, not a directory");
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
      common::throw_path_error("cannot read", path_, errno);
    }
    if (n == 0) {
      throw common::RunError("'" + path_ + "' ended after " + std::to_string(offset + done) +
                                 " bytes while reading " + std::to_string(bytes) +
                                 " bytes at offset " + std::to_string(offset),
                             "was the file truncated while being read?");
    }
    done += static_cast<std::size_t>(n);
  }
}

AtomicOutputFile::AtomicOutputFile(std::string path)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp." + std::to_string(::getpid())) {
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    common::throw_path_error("cannot write", path_, errno,
                             "check that the directory exists and is writable");
  }
}

AtomicOutputFile::~AtomicOutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicOutputFile::write(const void* data, std::size_t bytes) {
  ST_ASSERT(fd_ >= 0, "write after commit");
  const auto* in = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::write(fd_, in + done, bytes - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      common::throw_path_error(
          "cannot write", path_, errno,
          errno == ENOSPC ? "free some space or choose another directory" : "");
    }
    done += static_cast<std::size_t>(n);
  }
}

void AtomicOutputFile::commit() {
  ST_ASSERT(fd_ >= 0, "commit twice");
  if (::fsync(fd_) != 0) common::throw_path_error("cannot write", path_, errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) common::throw_path_error("cannot write", path_, errno);
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    common::throw_path_error("cannot replace", path_, errno);
  }
  committed_ = true;
  common::fsync_parent_dir(path_);
}

}  // namespace sparsetrain::fuyou
