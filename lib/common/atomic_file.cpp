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
#include "common/fault_injection.h"

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

// fsync(2), counted (and failed or skipped on request) by the fault injection: 0 or the errno.
int sync_errno(int fd, const std::string& path) {
  const FaultKind fault = count_io_op(FaultOp::kFileSync);
  if (fault == FaultKind::kNoSync) return 0;  // injected: a disk that acknowledges, keeps nothing
  if (fault != FaultKind::kNone) throw_injected_fault("cannot sync", path, fault);
  return ::fsync(fd) == 0 ? 0 : errno;
}

// rename(2) `from` over `to`, counted (and failed on request) by the fault injection.
void rename_into_place(const std::string& from, const std::string& to) {
  const FaultKind fault = count_io_op(FaultOp::kRename);
  if (fault != FaultKind::kNone) throw_injected_fault("cannot replace", to, fault);
  if (::rename(from.c_str(), to.c_str()) != 0) throw_path_error("cannot replace", to, errno);
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
  std::size_t end = bytes;
  const FaultKind fault = count_io_op(FaultOp::kFileWrite);
  if (fault == FaultKind::kShort)
    end = bytes / 2;  // a torn write: half lands, then EIO
  else if (fault != FaultKind::kNone)
    throw_injected_fault("cannot write", path_, fault);
  while (done < end) {
    const ssize_t n = ::write(fd_, in + done, bytes - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_path_error("cannot write", path_, errno,
                       errno == ENOSPC ? "free some space or choose another directory" : "");
    }
    done += static_cast<std::size_t>(n);
  }
  if (fault == FaultKind::kShort) throw_injected_fault("cannot write", path_, fault);
}

void AtomicFile::commit() {
  ST_ASSERT(fd_ >= 0, "commit twice");
  if (const int err = sync_errno(fd_, path_)) throw_path_error("cannot write", path_, err);
  const int fd = fd_;
  fd_ = -1;  // closed below whatever happens: the destructor must not close it again
  if (::close(fd) != 0) throw_path_error("cannot write", path_, errno);
  rename_into_place(tmp_path_, path_);
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
  // rename(2) replaces only an empty directory: an old tree steps aside to PATH.old.<pid> first
  // and is removed once the new one is in place (put back if that fails), so a failure at any
  // point leaves the old tree or the new one under PATH, never neither and never half of one.
  // Readers of PATH see no directory for the instant between the two renames.
  const std::string aside = path_ + ".old." + std::to_string(::getpid());
  const bool replacing = fs::exists(path_, ec);
  if (replacing) {
    fs::remove_all(aside, ec);  // a crashed run's (same pid), older than PATH: garbage
    rename_into_place(path_, aside);
  }
  try {
    rename_into_place(tmp_path_, path_);
  } catch (...) {
    if (replacing) ::rename(aside.c_str(), path_.c_str());
    throw;
  }
  committed_ = true;
  if (replacing) fs::remove_all(aside, ec);  // the old tree; a failure here loses nothing
  fsync_parent_dir(path_);
}

void sync_file(int fd, const std::string& path) {
  if (const int err = sync_errno(fd, path)) throw_path_error("cannot sync", path, err);
}

void fsync_parent_dir(const std::string& path) {
  const std::string dir = parent_dir(path);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_path_error("cannot open directory", dir, errno);
  int err = 0;
  try {
    err = sync_errno(fd, dir);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  // Some filesystems (tmpfs on old kernels, FUSE) refuse fsync on directories: not an error.
  if (err != 0 && err != EINVAL && err != ENOTSUP)
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
