// One sequential pass of the I/O engine over an existing file (read) or a new one (write): the
// engine alone, without bench-io's phases, so bench/io_vs_fio.py can read the very file fio just
// read, alternating the two tools on the same bytes. Prints one JSON object.
//   io_engine_bench read|write PATH BYTES [BLOCK_BYTES=1048576] [QD=32]
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/io/aligned_buffer.h"
#include "common/io/io_engine.h"
#include "common/timer.h"

namespace io = sparsetrain::common::io;

static double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec * 1e-6;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: io_engine_bench read|write PATH BYTES [BLOCK] [QD]\n");
    return 2;
  }
  const bool read = std::string(argv[1]) == "read";
  const std::string path = argv[2];
  const std::uint64_t bytes = std::strtoull(argv[3], nullptr, 10);
  io::IoOptions options;
  if (argc > 4) options.block_bytes = std::strtoull(argv[4], nullptr, 10);
  if (argc > 5) options.queue_depth = static_cast<unsigned>(std::strtoul(argv[5], nullptr, 10));
  try {
    auto engine = io::IoEngine::create(options);
    const io::FileId f =
        engine->open_file(path, read ? io::OpenMode::kRead : io::OpenMode::kCreate);
    io::AlignedBuffer buffer(options.block_bytes * options.queue_depth);
    engine->register_buffer(buffer.data(), buffer.size());
    std::vector<io::IoRequest> requests;
    const std::uint64_t blocks = bytes / options.block_bytes;
    for (std::uint64_t i = 0; i < blocks; ++i) {
      requests.push_back({read ? io::IoOp::kRead : io::IoOp::kWrite, f, i * options.block_bytes,
                          buffer.data() + (i % options.queue_depth) * options.block_bytes,
                          options.block_bytes});
    }
    const double cpu0 = cpu_seconds();
    sparsetrain::common::Timer timer;
    engine->run(std::move(requests));
    const double seconds = timer.seconds();
    const double gb = static_cast<double>(blocks * options.block_bytes) / 1e9;
    std::printf(
        "{\"op\":\"%s\",\"backend\":\"%s\",\"bytes\":%llu,\"block\":%zu,\"qd\":%u,\"seconds\":%.6f,"
        "\"gbps\":%.6f,\"cpu_s_per_gb\":%.6f}\n",
        argv[1], io::io_backend_name(engine->backend()),
        static_cast<unsigned long long>(blocks * options.block_bytes), options.block_bytes,
        options.queue_depth, seconds, gb / seconds, (cpu_seconds() - cpu0) / gb);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "io_engine_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
