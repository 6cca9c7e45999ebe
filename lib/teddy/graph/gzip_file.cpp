// Whole-file gzip/plain reading (libdeflate), a streaming line reader with a decompression thread
// (zlib), and a deterministic gzip writer.
#include "teddy/graph/gzip_file.h"

#include <fcntl.h>
#include <libdeflate.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/fault_injection.h"

namespace sparsetrain::teddy {

namespace {

constexpr std::size_t kChunkBytes = std::size_t{4} << 20;  // decompressed bytes per hand-over
constexpr std::size_t kReadBytes = std::size_t{1} << 20;   // compressed bytes per fread

}  // namespace

// Producer: reads the file and inflates it into chunks on its own thread; at most two chunks wait.
struct TextFileReader::Inflater {
  std::FILE* file = nullptr;
  bool gzip = false;
  std::thread worker;
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<std::string> ready;
  bool done = false;
  bool stop = false;
  std::string error;  // set by the worker on a corrupt/truncated stream or read error

  void run() {
    try {
      if (gzip) {
        inflate_all();
      } else {
        for (;;) {
          std::string chunk(kChunkBytes, '\0');
          const std::size_t n = std::fread(chunk.data(), 1, chunk.size(), file);
          if (n == 0) break;
          chunk.resize(n);
          if (!push(std::move(chunk))) return;
        }
        if (std::ferror(file)) fail("read error: " + common::errno_text(errno));
      }
    } catch (const std::exception& e) {
      fail(e.what());
    }
    std::lock_guard<std::mutex> lock(mutex);
    done = true;
    cv.notify_all();
  }

  void inflate_all() {
    z_stream z{};
    if (inflateInit2(&z, 15 + 32) != Z_OK) return fail("zlib inflateInit2 failed");
    std::string in(kReadBytes, '\0');
    std::string chunk(kChunkBytes, '\0');
    std::size_t filled = 0;
    int ret = Z_OK;
    bool input_eof = false;
    for (;;) {
      if (z.avail_in == 0 && !input_eof) {
        const std::size_t n = std::fread(in.data(), 1, in.size(), file);
        if (n == 0) input_eof = true;
        z.next_in = reinterpret_cast<Bytef*>(in.data());
        z.avail_in = static_cast<uInt>(n);
      }
      if (z.avail_in == 0 && input_eof) break;
      z.next_out = reinterpret_cast<Bytef*>(chunk.data() + filled);
      z.avail_out = static_cast<uInt>(chunk.size() - filled);
      ret = inflate(&z, Z_NO_FLUSH);
      if (ret == Z_NEED_DICT || ret == Z_DATA_ERROR || ret == Z_MEM_ERROR) {
        inflateEnd(&z);
        return fail(std::string("corrupt gzip data (") + (z.msg ? z.msg : "zlib error") + ")");
      }
      filled = chunk.size() - z.avail_out;
      if (ret == Z_STREAM_END) {
        // Concatenated gzip members are one stream (gzip(1) semantics).
        if (z.avail_in == 0 && !input_eof) {
          const std::size_t n = std::fread(in.data(), 1, in.size(), file);
          if (n == 0) input_eof = true;
          z.next_in = reinterpret_cast<Bytef*>(in.data());
          z.avail_in = static_cast<uInt>(n);
        }
        if (z.avail_in == 0) break;
        inflateReset(&z);
      }
      if (filled == chunk.size()) {
        if (!push(std::move(chunk))) return (void)inflateEnd(&z);
        chunk.assign(kChunkBytes, '\0');
        filled = 0;
      }
    }
    inflateEnd(&z);
    if (std::ferror(file)) return fail("read error: " + common::errno_text(errno));
    if (ret != Z_STREAM_END) return fail("truncated gzip stream (unexpected end of file)");
    chunk.resize(filled);
    if (!chunk.empty()) push(std::move(chunk));
  }

  bool push(std::string chunk) {
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [&] { return ready.size() < 2 || stop; });
    if (stop) return false;
    ready.push_back(std::move(chunk));
    cv.notify_all();
    return true;
  }

  void fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex);
    error = message;
    done = true;
    cv.notify_all();
  }

  // Next chunk; false at the end. Error text in `err` (empty when none).
  bool pop(std::string& chunk, std::string& err) {
    std::unique_lock<std::mutex> lock(mutex);
    cv.wait(lock, [&] { return !ready.empty() || done; });
    if (!ready.empty()) {
      chunk = std::move(ready.front());
      ready.pop_front();
      cv.notify_all();
      return true;
    }
    err = error;
    return false;
  }

  ~Inflater() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
      cv.notify_all();
    }
    if (worker.joinable()) worker.join();
    if (file) std::fclose(file);
  }
};

TextFileReader::TextFileReader(std::string path) : path_(std::move(path)) {
  inflater_ = std::make_unique<Inflater>();
  inflater_->file = std::fopen(path_.c_str(), "rb");
  if (!inflater_->file) common::throw_path_error("cannot open", path_, errno);
  unsigned char magic[2] = {0, 0};
  const std::size_t n = std::fread(magic, 1, 2, inflater_->file);
  inflater_->gzip = n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  std::fseek(inflater_->file, 0, SEEK_END);
  file_bytes_ = static_cast<std::uint64_t>(std::ftell(inflater_->file));
  std::fseek(inflater_->file, 0, SEEK_SET);
  inflater_->worker = std::thread([this] { inflater_->run(); });
}

TextFileReader::~TextFileReader() = default;

std::string TextFileReader::where() const { return path_ + ":" + std::to_string(line_number_); }

bool TextFileReader::refill() {
  if (eof_) return false;
  std::string chunk;
  std::string err;
  if (!inflater_->pop(chunk, err)) {
    if (!err.empty()) {
      throw common::UsageError(
          "'" + path_ + "' after line " + std::to_string(line_number_) + ": " + err,
          "the file is damaged; fetch or regenerate it");
    }
    eof_ = true;
    return false;
  }
  buffer_.erase(0, pos_);  // keep the partial last line
  buffer_ += chunk;
  pos_ = 0;
  return true;
}

bool TextFileReader::next_line(std::string_view& line) {
  for (;;) {
    const char* begin = buffer_.data() + pos_;
    const std::size_t left = buffer_.size() - pos_;
    const void* nl = std::memchr(begin, '\n', left);
    if (nl) {
      const std::size_t len = static_cast<std::size_t>(static_cast<const char*>(nl) - begin);
      line = std::string_view(begin, len);
      pos_ += len + 1;
      ++line_number_;
      return true;
    }
    if (!refill()) {
      if (pos_ < buffer_.size()) {  // last line without a newline
        line = std::string_view(buffer_.data() + pos_, buffer_.size() - pos_);
        pos_ = buffer_.size();
        ++line_number_;
        return true;
      }
      return false;
    }
  }
}

std::string gunzip_buffer(std::string_view compressed, const std::string& name) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 32) != Z_OK) throw common::RunError("zlib inflateInit2 failed");
  std::string out;
  char buf[65536];
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  z.avail_in = static_cast<uInt>(compressed.size());
  int ret = Z_OK;
  while (ret != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    ret = inflate(&z, Z_NO_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
    if (ret == Z_STREAM_END) break;
    if (ret != Z_OK || (z.avail_in == 0 && z.avail_out != 0)) {
      inflateEnd(&z);
      throw common::UsageError(
          "'" + name + "': " +
              (ret == Z_OK || ret == Z_BUF_ERROR ? std::string("truncated gzip stream")
                                                 : std::string("corrupt gzip data")),
          "the file is damaged; fetch or regenerate it");
    }
  }
  inflateEnd(&z);
  return out;
}

void TextBuffer::Free::operator()(char* p) const { std::free(p); }

namespace {

struct DecompressorFree {
  void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
};

[[noreturn]] void throw_out_of_memory(std::size_t bytes, const std::string& path) {
  throw common::RunError(
      "out of memory reading '" + path + "' (" + std::to_string(bytes) + " bytes)",
      "free memory or use a machine with more RAM");
}

char* malloc_or_throw(std::size_t bytes, const std::string& path) {
  char* p = static_cast<char*>(std::malloc(std::max<std::size_t>(bytes, 1)));
  if (p == nullptr) throw_out_of_memory(bytes, path);
  return p;
}

// Inflates every gzip member of `in` into one block. libdeflate inflates a member in one call into
// a buffer that must hold all of it, so the capacity starts at the last member's ISIZE (exact for
// a single member below 4 GiB), at least 4x the input and at most deflate's 1032:1 ratio, and
// doubles when a member does not fit (that member is inflated again). Capacity never written is
// address space only: the block comes from mmap and untouched pages take no memory.
TextBuffer inflate_gzip(std::string_view in, const std::string& path) {
  std::uint32_t isize = 0;  // ISIZE: little-endian, the uncompressed size mod 2^32
  if (in.size() >= 4) {
    const auto* b = reinterpret_cast<const unsigned char*>(in.data() + in.size() - 4);
    isize = std::uint32_t{b[0]} | std::uint32_t{b[1]} << 8 | std::uint32_t{b[2]} << 16 |
            std::uint32_t{b[3]} << 24;
  }
  std::size_t capacity = std::max<std::size_t>(isize, 4 * in.size());
  capacity = std::max<std::size_t>(std::min(capacity, 1032 * in.size()), 4096);
  TextBuffer out(malloc_or_throw(capacity, path), 0);
  std::unique_ptr<libdeflate_decompressor, DecompressorFree> d(libdeflate_alloc_decompressor());
  if (!d) throw common::RunError("libdeflate_alloc_decompressor failed for '" + path + "'");
  std::size_t in_pos = 0;
  std::size_t out_pos = 0;
  while (in_pos < in.size()) {
    std::size_t used = 0;
    std::size_t made = 0;
    const libdeflate_result r =
        libdeflate_gzip_decompress_ex(d.get(), in.data() + in_pos, in.size() - in_pos,
                                      out.data() + out_pos, capacity - out_pos, &used, &made);
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
      capacity *= 2;
      char* grown = static_cast<char*>(std::realloc(out.data(), capacity));
      if (grown == nullptr) throw_out_of_memory(capacity, path);
      (void)out.release();  // realloc moved (or kept) the block: `grown` owns it now
      out = TextBuffer(grown, 0);
      continue;
    }
    if (r != LIBDEFLATE_SUCCESS) {
      // zlib tells a truncated stream from a corrupt one; its error names the file.
      (void)gunzip_buffer(in.substr(in_pos), path);
      throw common::UsageError("'" + path + "': corrupt gzip data",
                               "the file is damaged; fetch or regenerate it");
    }
    in_pos += used;
    out_pos += made;
  }
  // Give back the address space beyond the text (mremap for a large block: no copy).
  char* fitted = static_cast<char*>(std::realloc(out.data(), std::max<std::size_t>(out_pos, 1)));
  if (fitted != nullptr) {
    (void)out.release();
    out = TextBuffer(fitted, 0);
  }
  out.set_size(out_pos);
  return out;
}

}  // namespace

TextBuffer read_file_bytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) common::throw_path_error("cannot open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    common::throw_path_error("cannot stat", path, err);
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  TextBuffer file;
  try {
    file = TextBuffer(malloc_or_throw(size, path), size);
  } catch (...) {
    ::close(fd);
    throw;
  }
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(fd, file.data() + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      common::throw_path_error("cannot read", path, err);
    }
    if (n == 0) break;  // the file shrank while we read it: take what is there
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  file.set_size(got);
  return file;
}

TextBuffer decode_text(std::string_view file, const std::string& path) {
  const bool gzip = file.size() >= 2 && static_cast<unsigned char>(file[0]) == 0x1f &&
                    static_cast<unsigned char>(file[1]) == 0x8b;
  if (gzip) return inflate_gzip(file, path);
  TextBuffer text(malloc_or_throw(file.size(), path), file.size());
  std::memcpy(text.data(), file.data(), file.size());
  return text;
}

TextBuffer read_text_file(const std::string& path, std::uint64_t* file_bytes) {
  TextBuffer file = read_file_bytes(path);
  if (file_bytes != nullptr) *file_bytes = file.size();
  const bool gzip = file.size() >= 2 && static_cast<unsigned char>(file.view()[0]) == 0x1f &&
                    static_cast<unsigned char>(file.view()[1]) == 0x8b;
  if (!gzip) return file;
  return inflate_gzip(file.view(), path);
}

namespace {

// gzip header constants (RFC 1952) and GzipWriter's index subfield.
constexpr unsigned char kGzipId1 = 0x1f, kGzipId2 = 0x8b, kDeflate = 8, kFlagExtra = 4;
constexpr unsigned char kOsUnix = 3;
constexpr char kIndexId1 = 'S', kIndexId2 = 'T';
constexpr std::size_t kIndexLen = 8;                          // u32 member bytes, u32 lines
constexpr std::size_t kHeaderBytes = 10 + 2 + 4 + kIndexLen;  // fixed + XLEN + subfield
constexpr std::size_t kTrailerBytes = 8;                      // CRC32, ISIZE

std::uint32_t load_u32(const unsigned char* p) {
  return std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
         std::uint32_t{p[3]} << 24;
}

void store_u32(unsigned char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

}  // namespace

std::vector<GzipMember> index_gzip_members(std::string_view file) {
  std::vector<GzipMember> members;
  const auto* base = reinterpret_cast<const unsigned char*>(file.data());
  std::uint64_t at = 0;
  while (at < file.size()) {
    const unsigned char* h = base + at;
    const std::uint64_t left = file.size() - at;
    // Our members only: the magic, deflate, FEXTRA and nothing else, the subfield first.
    if (left < kHeaderBytes + kTrailerBytes || h[0] != kGzipId1 || h[1] != kGzipId2 ||
        h[2] != kDeflate || h[3] != kFlagExtra || h[10] != 4 + kIndexLen || h[11] != 0 ||
        h[12] != kIndexId1 || h[13] != kIndexId2 || h[14] != kIndexLen || h[15] != 0) {
      return {};
    }
    GzipMember m;
    m.offset = at;
    m.bytes = load_u32(h + 16);
    m.lines = load_u32(h + 20);
    if (m.bytes < kHeaderBytes + kTrailerBytes || m.bytes > left) return {};
    m.text_bytes = load_u32(h + m.bytes - 4);
    // Sizes a reader allocates from: a line takes a byte at least, deflate expands 1032:1 at most.
    if (m.lines > m.text_bytes || m.text_bytes > std::uint64_t{1032} * m.bytes) return {};
    members.push_back(m);
    at += m.bytes;
  }
  return members;
}

GzipWriter::GzipWriter(std::string path, int level) : path_(std::move(path)) {
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) common::throw_path_error("cannot create", path_, errno);
  compressor_ = libdeflate_alloc_compressor(std::clamp(level, 1, 9));
  if (compressor_ == nullptr) {
    std::fclose(file_);
    file_ = nullptr;
    throw common::RunError("libdeflate_alloc_compressor failed for '" + path_ + "'");
  }
  pending_.reserve(2 * kMemberTextBytes);
}

GzipWriter::~GzipWriter() {
  if (compressor_ != nullptr) libdeflate_free_compressor(compressor_);
  if (file_) std::fclose(file_);
}

void GzipWriter::write(std::string_view text) {
  pending_.append(text);
  std::size_t done = 0;
  while (pending_.size() - done >= kMemberTextBytes) {
    // cut after the last line end within the member size (mid-line only for a longer line)
    const std::size_t nl = pending_.rfind('\n', done + kMemberTextBytes - 1);
    const std::size_t cut = nl == std::string::npos || nl < done ? kMemberTextBytes : nl + 1 - done;
    write_member(std::string_view(pending_).substr(done, cut));
    done += cut;
  }
  pending_.erase(0, done);
}

// One member: header with the 'S','T' subfield (member bytes, line count), raw deflate, CRC32,
// ISIZE.
void GzipWriter::write_member(std::string_view text) {
  const std::size_t bound = libdeflate_deflate_compress_bound(compressor_, text.size());
  out_.resize(kHeaderBytes + bound + kTrailerBytes);
  auto* o = reinterpret_cast<unsigned char*>(out_.data());
  const std::size_t packed =
      libdeflate_deflate_compress(compressor_, text.data(), text.size(), o + kHeaderBytes, bound);
  ST_ASSERT(packed > 0, "libdeflate output bound too small");
  const std::size_t bytes = kHeaderBytes + packed + kTrailerBytes;
  ST_ASSERT(bytes <= UINT32_MAX && text.size() <= UINT32_MAX, "gzip member too large");
  std::uint64_t lines = static_cast<std::uint64_t>(std::count(text.begin(), text.end(), '\n'));
  if (!text.empty() && text.back() != '\n') ++lines;  // a last line without its newline
  const unsigned char header[10] = {kGzipId1, kGzipId2, kDeflate, kFlagExtra, 0, 0,
                                    0,        0,        0,        kOsUnix};  // mtime 0, XFL 0
  std::memcpy(o, header, sizeof header);
  o[10] = 4 + kIndexLen;  // XLEN, little-endian
  o[11] = 0;
  o[12] = kIndexId1;
  o[13] = kIndexId2;
  o[14] = kIndexLen;
  o[15] = 0;
  store_u32(o + 16, static_cast<std::uint32_t>(bytes));
  store_u32(o + 20, static_cast<std::uint32_t>(lines));
  unsigned char* trailer = o + kHeaderBytes + packed;
  store_u32(trailer, libdeflate_crc32(0, text.data(), text.size()));
  store_u32(trailer + 4, static_cast<std::uint32_t>(text.size()));
  const common::FaultKind fault = common::count_io_op(common::FaultOp::kFileWrite);
  if (fault == common::FaultKind::kShort) std::fwrite(o, 1, bytes / 2, file_);  // torn: half lands
  if (fault != common::FaultKind::kNone) common::throw_injected_fault("cannot write", path_, fault);
  if (std::fwrite(o, 1, bytes, file_) != bytes)
    common::throw_path_error("cannot write", path_, errno);
  bytes_written_ += bytes;
  ++members_;
}

void GzipWriter::close() {
  if (!pending_.empty() || members_ == 0) write_member(pending_);
  pending_.clear();
  std::FILE* f = file_;
  file_ = nullptr;
  try {
    if (std::fflush(f) != 0) common::throw_path_error("cannot write", path_, errno);
    common::sync_file(fileno(f), path_);
  } catch (...) {
    std::fclose(f);
    throw;
  }
  if (std::fclose(f) != 0) common::throw_path_error("cannot write", path_, errno);
}

}  // namespace sparsetrain::teddy
