#include "common/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <system_error>

#include "common/error.h"

namespace sparsetrain::common {

namespace fs = std::filesystem;

namespace {

// The sibling every atomic write goes through first: same directory, so rename() is atomic.
std::string temp_sibling(const std::string& path) {
  return path + ".tmp." + std::to_string(::getpid());
}

std::string parent_dir(const std::string& path) {
  std::string parent = fs::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_path_(temp_sibling(path_)) {
  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw_path_error("cannot write", path_, errno,
                     "check that the directory exists and is writable");
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  ST_ASSERT(fd_ >= 0, "write after commit");
  const auto* in = static_cast<const char*>(data);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::write(fd_, in + done, bytes - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_path_error("cannot write", path_, errno,
                       errno == ENOSPC ? "free some space or choose another directory" : "");
    }
    done += static_cast<std::size_t>(n);
  }
}

void AtomicFile::commit() {
  ST_ASSERT(fd_ >= 0, "commit twice");
  if (::fsync(fd_) != 0) throw_path_error("cannot write", path_, errno);
  const int fd = fd_;
  fd_ = -1;  // closed below whatever happens: the destructor must not close it again
  if (::close(fd) != 0) throw_path_error("cannot write", path_, errno);
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw_path_error("cannot replace", path_, errno);
  }
  committed_ = true;
  fsync_parent_dir(path_);
}

AtomicDirectory::AtomicDirectory(std::string path)
    : path_(std::move(path)), tmp_path_(temp_sibling(path_)) {
  std::error_code ec;
  fs::remove_all(tmp_path_, ec);
}

AtomicDirectory::~AtomicDirectory() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(tmp_path_, ec);
}

void AtomicDirectory::commit() {
  ST_ASSERT(!committed_, "commit twice");
  std::error_code ec;
  // rename(2) replaces only an empty directory: the old tree goes first (not atomic for readers
  // of PATH in between; a reader never sees a half-written new tree).
  if (fs::exists(path_, ec)) {
    fs::remove_all(path_, ec);
    if (ec) throw_path_error("cannot replace", path_, ec.value());
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw_path_error("cannot replace", path_, errno);
  }
  committed_ = true;
  fsync_parent_dir(path_);
}

void fsync_parent_dir(const std::string& path) {
  const std::string dir = parent_dir(path);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_path_error("cannot open directory", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  // Some filesystems (tmpfs on old kernels, FUSE) refuse fsync on directories: not an error.
  if (rc != 0 && err != EINVAL && err != ENOTSUP)
    throw_path_error("cannot sync directory", dir, err);
}

void write_file_atomic(const std::string& path, std::string_view content) {
  if (path == "-") {
    std::cout.write(content.data(), static_cast<std::streamsize>(content.size()));
    std::cout.flush();
    return;
  }
  AtomicFile file(path);
  file.write(content);
  file.commit();
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
