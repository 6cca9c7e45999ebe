// The SSD bandwidth probe (see ssd_probe.h).
#include "common/io/ssd_probe.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <future>
#include <thread>

#include "common/timer.h"

namespace sparsetrain::common::io {

namespace {

double cpu_seconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto sec = [](const timeval& tv) { return static_cast<double>(tv.tv_sec) + tv.tv_usec * 1e-6; };
  return sec(usage.ru_utime) + sec(usage.ru_stime);
}

}  // namespace

SsdProbeShape fit_ssd_probe(std::uint64_t bytes, std::uint64_t stripe_bytes,
                            std::uint64_t block_bytes) {
  SsdProbeShape shape;
  const std::uint64_t stripe = stripe_bytes / block_bytes * block_bytes;
  if (stripe == 0) return shape;
  // Each file holds whole stripe units, and the read+write phase splits it into two halves of
  // whole units: file = 2 * half, half a multiple of the unit (shrunk for small sizes).
  std::uint64_t half = bytes / 2 / block_bytes * block_bytes;
  shape.stripe_bytes = std::max(block_bytes, std::min(stripe, half));
  shape.half_bytes = half / shape.stripe_bytes * shape.stripe_bytes;
  shape.file_bytes = 2 * shape.half_bytes;
  return shape;
}

double ProbePhaseRate::bytes_per_s() const {
  std::uint64_t bytes = 0;
  for (const ProbeStreamRate& s : streams) bytes += s.bytes;
  return static_cast<double>(bytes) / std::max(seconds, 1e-9);
}

// One stream of a phase: `bytes` moved by `op` over `files` (round-robin by stripe unit).
struct SsdProbe::Stream {
  IoOp op;
  std::vector<FileId> files;
  std::uint64_t offset;             // in each file
  std::uint64_t bytes;              // in total
  std::uint64_t stripe_blocks = 1;  // consecutive blocks per file before moving to the next
};

SsdProbe::SsdProbe(IoEngine& engine, std::vector<std::string> dirs, SsdProbeShape shape,
                   std::string name)
    : engine_(engine), dirs_(std::move(dirs)), shape_(shape), name_(std::move(name)) {
  const std::size_t bytes = engine_.options().block_bytes * engine_.options().queue_depth;
  for (int s = 0; s < 2; ++s) {
    buffers_.emplace_back(bytes);
    AlignedBuffer& buffer = buffers_.back();
    for (std::size_t i = 0; i < buffer.size(); i += 8) {
      const std::uint64_t word = (i + 1) * 0x9E3779B97F4A7C15ull;  // incompressible-ish, not zeros
      std::memcpy(buffer.data() + i, &word, 8);
    }
    engine_.register_buffer(buffer.data(), buffer.size());
  }
}

SsdProbe::~SsdProbe() {
  for (FileId file : files_) engine_.close_file(file);
  for (const std::string& path : paths_) ::unlink(path.c_str());
  for (AlignedBuffer& buffer : buffers_) engine_.unregister_buffer(buffer.data());
}

std::vector<FileId> SsdProbe::create_files(const std::string& tag) {
  std::vector<FileId> made;
  for (const std::string& dir : dirs_) {
    const std::string path =
        dir + "/.sparsetrain-" + name_ + "." + std::to_string(::getpid()) + tag + ".dat";
    made.push_back(engine_.open_file(path, OpenMode::kCreate));
    files_.push_back(made.back());
    paths_.push_back(path);
    direct_ = direct_ && engine_.is_direct(made.back());
    // Room for the whole size in each file (the read+write phase uses both halves).
    engine_.allocate(made.back(), 0, shape_.file_bytes);
  }
  return made;
}

// Runs all streams at once; each is one batch of block-sized requests whose buffers cycle through
// that stream's own queue depth × block buffer.
ProbePhaseRate SsdProbe::run_phase(const std::vector<Stream>& streams) {
  const std::size_t block = engine_.options().block_bytes;
  const std::size_t slots = engine_.options().queue_depth;
  std::vector<std::vector<IoRequest>> batches(streams.size());
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < streams.size(); ++s) {
    const Stream& st = streams[s];
    const std::uint64_t blocks = st.bytes / block;
    const std::size_t n = st.files.size();
    const std::uint64_t u = st.stripe_blocks;
    for (std::uint64_t i = 0; i < blocks; ++i) {
      const std::uint64_t unit = i / u;  // stripe unit i falls in; unit k lives in file k % n
      batches[s].push_back({st.op, st.files[unit % n], st.offset + ((unit / n) * u + i % u) * block,
                            buffers_[s].data() + (i % slots) * block, block});
    }
    total += blocks * block;
  }
  const double cpu0 = cpu_seconds();
  Timer timer;
  std::vector<std::shared_future<void>> futures;
  for (auto& b : batches) futures.push_back(engine_.submit(std::move(b)).share());
  ProbePhaseRate result;
  result.streams.resize(streams.size());
  std::vector<std::thread> waiters;
  for (std::size_t s = 0; s < streams.size(); ++s) {
    waiters.emplace_back([&, s] {
      try {
        futures[s].wait();
      } catch (...) {
      }
      result.streams[s].seconds = timer.seconds();
    });
  }
  for (auto& w : waiters) w.join();
  for (auto& f : futures) f.get();  // rethrows an I/O error
  result.seconds = timer.seconds();
  result.cpu_s_per_gb = (cpu_seconds() - cpu0) / (static_cast<double>(total) / 1e9);
  for (std::size_t s = 0; s < streams.size(); ++s) {
    result.streams[s].bytes = streams[s].bytes / block * block;
    result.streams[s].gbps =
        static_cast<double>(result.streams[s].bytes) / 1e9 / result.streams[s].seconds;
  }
  return result;
}

ProbeTargetRate SsdProbe::run(const std::vector<FileId>& files, const PhaseFn& on_phase) {
  const std::uint64_t total = shape_.file_bytes * files.size();
  const std::uint64_t half = shape_.half_bytes * files.size();
  const std::uint64_t u = shape_.stripe_bytes / engine_.options().block_bytes;
  ProbeTargetRate rate;
  rate.write = run_phase({{IoOp::kWrite, files, 0, total, u}});
  if (on_phase) on_phase("write", rate.write);
  rate.read = run_phase({{IoOp::kRead, files, 0, total, u}});
  if (on_phase) on_phase("read", rate.read);
  rate.read_write = run_phase(
      {{IoOp::kRead, files, 0, half, u}, {IoOp::kWrite, files, shape_.half_bytes, half, u}});
  if (on_phase) on_phase("read_write", rate.read_write);
  return rate;
}

}  // namespace sparsetrain::common::io
