// Reading and deterministic writing of gzip (or plain) text files.
//
// `GzipWriter` writes standard multi-member gzip (RFC 1952; gzip -d, zlib, Python's gzip and
// pandas read it as one stream): each member holds about 1 MiB of text ending at a line end and
// carries, in its FEXTRA field, a subfield 'S','T' with its own byte size and line count (as
// BGZF does with 'B','C'). Members compress with libdeflate, mtime 0, no file name: the same
// content always gives the same bytes.
// `index_gzip_members` finds those members without inflating anything, so a reader can inflate
// and parse them on all threads, each straight into its slice of the output (graph_io's edge
// reader does). Any other gzip file has no index and is read as one stream.
// `read_text_file` loads a whole file into memory, inflating gzip (any number of members) with
// libdeflate in one call per member — about 3x zlib's streaming inflate.
// `TextFileReader` (zlib, streaming) hands out complete lines with their 1-based line numbers for
// the small files (counts, labels, splits, features); decompression runs on a helper thread so
// that parsing and inflating overlap.
// Readers report a truncated or corrupt gzip stream as a UsageError naming the file. Not a CSV
// parser (see text_parse.h) and not seekable.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct libdeflate_compressor;

namespace sparsetrain::teddy {

class TextFileReader {
 public:
  // Opens `path`; gzip when it starts with the gzip magic, else plain text. Throws UsageError when
  // it cannot be opened.
  explicit TextFileReader(std::string path);
  ~TextFileReader();
  TextFileReader(const TextFileReader&) = delete;
  TextFileReader& operator=(const TextFileReader&) = delete;

  // Next line without its '\n' (a '\r' before it is kept for the parser to skip). False at the
  // end of the file. Throws UsageError on a truncated or corrupt gzip stream.
  bool next_line(std::string_view& line);
  // 1-based number of the line last returned.
  std::uint64_t line_number() const { return line_number_; }
  const std::string& path() const { return path_; }
  // Bytes of the file on disk (compressed size for gzip), for throughput figures.
  std::uint64_t file_bytes() const { return file_bytes_; }
  // "FILE:LINE" for error messages.
  std::string where() const;

 private:
  bool refill();
  struct Inflater;
  std::string path_;
  std::unique_ptr<Inflater> inflater_;
  std::string buffer_;   // current chunk plus the carried-over partial line
  std::size_t pos_ = 0;  // start of the next line in buffer_
  bool eof_ = false;
  std::uint64_t line_number_ = 0;
  std::uint64_t file_bytes_ = 0;
};

// A whole file's text in one malloc'd block (so it can grow with realloc/mremap while inflating
// and is never zero-filled first).
class TextBuffer {
 public:
  TextBuffer() = default;
  // Takes ownership of `data` (from malloc/realloc), of which the first `size` bytes are text.
  TextBuffer(char* data, std::size_t size) : data_(data), size_(size) {}
  std::string_view view() const { return {data_.get(), size_}; }
  std::size_t size() const { return size_; }
  char* data() { return data_.get(); }
  void set_size(std::size_t size) { size_ = size; }
  // Gives up ownership (the caller frees with std::free).
  char* release() {
    size_ = 0;
    return data_.release();
  }

 private:
  struct Free {
    void operator()(char* p) const;
  };
  std::unique_ptr<char, Free> data_;
  std::size_t size_ = 0;
};

// The raw bytes of `path` (no decompression). Throws UsageError naming the file when it cannot be
// opened.
TextBuffer read_file_bytes(const std::string& path);

// `file` (raw bytes) as text: gzip (by its magic; concatenated members are one stream, as gzip(1)
// reads them) inflated, plain text copied. Throws UsageError naming `path` when the gzip data is
// truncated or corrupt.
TextBuffer decode_text(std::string_view file, const std::string& path);

// One member of a GzipWriter file: [offset, offset + bytes) in the file, `lines` lines of text
// (every member but the last ends with '\n'), `text_bytes` (its ISIZE) of text.
struct GzipMember {
  std::uint64_t offset = 0;
  std::uint32_t bytes = 0;
  std::uint32_t lines = 0;
  std::uint32_t text_bytes = 0;
};

// The members of `file` when every member carries GzipWriter's 'S','T' subfield and together they
// cover the file exactly; empty otherwise (any other gzip file, or a damaged one: read it as one
// stream, which also reports the damage). Reads headers and trailers only: O(members).
std::vector<GzipMember> index_gzip_members(std::string_view file);

// Reads all of `path`: gzip (detected by its magic; concatenated members are one stream, as
// gzip(1) reads them) or plain text. `file_bytes` gets the on-disk size. Memory: the compressed
// file while inflating plus the text. Throws UsageError naming the file when it cannot be opened
// or the gzip data is truncated or corrupt.
TextBuffer read_text_file(const std::string& path, std::uint64_t* file_bytes = nullptr);

// Decompresses a whole gzip stream held in memory (for the fuzz harness and tests). Throws
// UsageError naming `name` when the stream is truncated or corrupt.
std::string gunzip_buffer(std::string_view compressed, const std::string& name);

class GzipWriter {
 public:
  // Text per member: members end at the last line end within this many bytes (or here, for a
  // line longer than that).
  static constexpr std::size_t kMemberTextBytes = std::size_t{1} << 20;

  // Creates `path` (truncating it). Compression level 1..9 (libdeflate's levels); level 1 keeps
  // writing graphs of 1e8 edges fast. Throws UsageError/RunError naming the path when it cannot
  // be created.
  GzipWriter(std::string path, int level);
  ~GzipWriter();  // closes without syncing when close() was not called (error paths)
  GzipWriter(const GzipWriter&) = delete;
  GzipWriter& operator=(const GzipWriter&) = delete;

  // Buffers `text`; writes a member whenever kMemberTextBytes have gathered.
  void write(std::string_view text);
  // Writes the last member (an empty one for an empty file), flushes and fsyncs the file. Throws
  // RunError on ENOSPC/EIO.
  void close();
  std::uint64_t bytes_written() const { return bytes_written_; }

 private:
  void write_member(std::string_view text);
  std::string path_;
  std::FILE* file_ = nullptr;
  libdeflate_compressor* compressor_ = nullptr;
  std::string pending_;
  std::string out_;
  std::uint64_t members_ = 0;
  std::uint64_t bytes_written_ = 0;
};

}  // namespace sparsetrain::teddy
