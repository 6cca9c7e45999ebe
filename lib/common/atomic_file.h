// Writing a file so that readers see either the old content or the whole new content, never a
// half-written file: write `PATH.tmp.<pid>`, fsync it, rename over PATH, fsync the directory.
// Used for run records, manifests and every output a crash must not corrupt.
#pragma once

#include <string>
#include <string_view>

namespace sparsetrain::common {

// Replaces `path` with `content` atomically. '-' writes to stdout instead. Throws UsageError
// (missing or unwritable directory) or RunError (ENOSPC, EIO) naming the path; on failure the
// temporary file is removed and `path` is untouched.
void write_file_atomic(const std::string& path, std::string_view content);

// fsync of the directory holding `path` (makes a rename durable).
void fsync_parent_dir(const std::string& path);

// Whole file as bytes; throws UsageError naming the path when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace sparsetrain::common
