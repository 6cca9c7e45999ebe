// The SSD bandwidth probe: what the disks behind some directories deliver through our I/O engine
// (O_DIRECT where the filesystem allows it, io_uring or the thread pool, the engine's block size
// and queue depth). `fuyou bench-io` reports it per directory and striped; the offload planner's
// SSD rates (fuyou/offload/offload_rates.h) are the same phases over all --ssd directories.
//
// A target is one scratch file per directory, written in stripe units round-robin across them
// (the tensor store's layout). Per target, in this order: a write of the whole files, a read of
// what was just written, then the first halves read while the second halves are rewritten (as a
// step reads and rewrites the states). Each target gets fresh preallocated files, so its write
// phase fills unwritten extents (overwriting what an earlier target wrote is cheaper on ext4 and
// would flatter whichever target came second).
// Contents are never checked: this measures, it does not verify (store verify does).
// Not the capability checks (probe.h: can io_uring / O_DIRECT be used at all).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/io/aligned_buffer.h"
#include "common/io/io_engine.h"

namespace sparsetrain::common::io {

// The tensor store's default extent: the striping unit the planner probes with.
constexpr std::uint64_t kDefaultProbeStripeBytes = std::uint64_t{4} << 20;

struct SsdProbeShape {
  std::uint64_t file_bytes = 0;    // per scratch file: 2 * half_bytes
  std::uint64_t half_bytes = 0;    // the read+write phase's halves: whole stripe units
  std::uint64_t stripe_bytes = 0;  // striping unit across the files: whole blocks
};

// The shape for about `bytes` per file, a striping unit of `stripe_bytes` and I/Os of
// `block_bytes`: the unit is rounded down to whole blocks and shrunk to a half for small sizes,
// each half to whole units. All zero when the unit is under one block; file_bytes = 0 when
// `bytes` is under two blocks.
SsdProbeShape fit_ssd_probe(std::uint64_t bytes, std::uint64_t stripe_bytes,
                            std::uint64_t block_bytes);

struct ProbeStreamRate {
  std::uint64_t bytes = 0;  // moved by this stream
  double seconds = 0;       // from the phase's start to this stream's last byte
  double gbps = 0;          // 1e9 bytes per second
};

struct ProbePhaseRate {
  std::vector<ProbeStreamRate> streams;  // write: {write}; read: {read}; read_write: {read, write}
  double seconds = 0;                    // until every stream finished
  double cpu_s_per_gb = 0;               // this process's user + system CPU seconds per 1e9 bytes
  // All streams' bytes over the phase's seconds (read_write: reads and writes together).
  double bytes_per_s() const;
};

struct ProbeTargetRate {
  ProbePhaseRate write, read, read_write;
};

class SsdProbe {
 public:
  // Phase names passed to the callback of run(): "write", "read", "read_write".
  using PhaseFn = std::function<void(const std::string& phase, const ProbePhaseRate& rate)>;

  // `engine` (set up for `dirs`) outlives the probe. Scratch files are named
  // DIR/.sparsetrain-<name>.<pid><tag>.dat. Allocates two buffers of block × queue depth bytes
  // (each stream cycles through its own) and registers them with the engine.
  SsdProbe(IoEngine& engine, std::vector<std::string> dirs, SsdProbeShape shape, std::string name);
  // Closes and removes every scratch file, however the probe ended.
  ~SsdProbe();
  SsdProbe(const SsdProbe&) = delete;
  SsdProbe& operator=(const SsdProbe&) = delete;

  // One fresh file per directory, preallocated to file_bytes: a target for run(). Throws IoError
  // (ENOSPC with a hint) or UsageError naming the path.
  std::vector<FileId> create_files(const std::string& tag);
  // Whether every scratch file so far is O_DIRECT (reads of the others come from the page cache:
  // not the disk's rate).
  bool direct() const { return direct_; }
  // The three phases over `files` (one file: that directory alone), in stripe units round-robin;
  // `on_phase` is called after each. Throws IoError on an I/O failure.
  ProbeTargetRate run(const std::vector<FileId>& files, const PhaseFn& on_phase = {});

 private:
  struct Stream;
  ProbePhaseRate run_phase(const std::vector<Stream>& streams);

  IoEngine& engine_;
  std::vector<std::string> dirs_;
  SsdProbeShape shape_;
  std::string name_;
  std::vector<AlignedBuffer> buffers_;  // [2] one per concurrent stream
  std::vector<FileId> files_;
  std::vector<std::string> paths_;
  bool direct_ = true;
};

}  // namespace sparsetrain::common::io
