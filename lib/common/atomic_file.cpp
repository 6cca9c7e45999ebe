#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/error.h"

namespace sparsetrain::common {

namespace {

// Closes the fd and removes the temp file unless released: nothing half-written survives a throw.
class TempFile {
 public:
  TempFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  void close_or_throw() {
    int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) throw_path_error("cannot write", path_, errno);
  }
  void commit() { committed_ = true; }

 private:
  std::string path_;
  int fd_;
  bool committed_ = false;
};

std::string parent_dir(const std::string& path) {
  std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

void fsync_parent_dir(const std::string& path) {
  const std::string dir = parent_dir(path);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_path_error("cannot open directory", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some filesystems (tmpfs on old kernels, FUSE) refuse fsync on directories: not an error.
  if (rc != 0 && err != EINVAL && err != ENOTSUP) throw_path_error("cannot sync directory", dir, err);
}

void write_file_atomic(const std::string& path, std::string_view content) {
  if (path == "-") {
    std::cout.write(content.data(), static_cast<std::streamsize>(content.size()));
    std::cout.flush();
    return;
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw_path_error("cannot write", path, errno, "check that the directory exists and is writable");
  }
  TempFile file(tmp, fd);
  std::size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_path_error("cannot write", path, errno,
                       errno == ENOSPC ? "free some space or choose another directory" : "");
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) throw_path_error("cannot write", path, errno);
  file.close_or_throw();
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw_path_error("cannot replace", path, errno);
  file.commit();
  fsync_parent_dir(path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_path_error("cannot read", path, errno);
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) throw_path_error("cannot read", path, errno);
  return out.str();
}

}  // namespace sparsetrain::common
