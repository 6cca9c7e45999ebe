// World from the launchers' environment (see world.h).
#include "fuyou/dist/world.h"

#include <cerrno>
#include <cstdlib>
#include <limits>

#include "common/error.h"

namespace sparsetrain::fuyou {

namespace {

using Getenv = std::function<const char*(const char*)>;

// The first of `names` that is set: (name, value), or none.
std::pair<const char*, const char*> first_set(const Getenv& getenv,
                                              std::initializer_list<const char*> names) {
  for (const char* name : names) {
    const char* value = getenv(name);
    if (value && *value) return {name, value};
  }
  return {nullptr, nullptr};
}

int parse_int(const char* name, const char* value, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(value, &end, 10);
  if (errno != 0 || end == value || *end != '\0' || v < lo || v > hi) {
    throw common::UsageError(std::string(name) + "='" + value + "' is not a number in [" +
                                 std::to_string(lo) + ", " + std::to_string(hi) + "]",
                             "unset it, or let the launcher (torchrun, srun, --nproc) set it");
  }
  return static_cast<int>(v);
}

}  // namespace

bool World::loopback() const {
  return master_addr == "localhost" || master_addr == "::1" || master_addr.rfind("127.", 0) == 0;
}

World world_from_env(const Getenv& getenv_arg) {
  const Getenv getenv =
      getenv_arg ? getenv_arg : Getenv([](const char* n) { return std::getenv(n); });
  constexpr long kMaxRanks = 1 << 20;
  World world;
  const auto [size_name, size_value] =
      first_set(getenv, {"WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"});
  const auto [rank_name, rank_value] =
      first_set(getenv, {"RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"});
  if (!size_name) {
    if (rank_name && parse_int(rank_name, rank_value, 0, kMaxRanks) != 0) {
      throw common::UsageError(std::string(rank_name) + "=" + rank_value + " but no WORLD_SIZE",
                               "set WORLD_SIZE too, or start the ranks with torchrun or --nproc");
    }
    return world;
  }
  world.size = parse_int(size_name, size_value, 1, kMaxRanks);
  world.rank = rank_name ? parse_int(rank_name, rank_value, 0, kMaxRanks) : 0;
  if (!rank_name && world.size > 1) {
    throw common::UsageError(std::string(size_name) + "=" + size_value + " but no RANK",
                             "set RANK for each process, or start them with torchrun or --nproc");
  }
  if (world.rank >= world.size) {
    throw common::UsageError(
        std::string(rank_name) + "=" + rank_value + " is not below " + size_name + "=" + size_value,
        "ranks run from 0 to WORLD_SIZE - 1");
  }
  const auto [local_name, local_value] =
      first_set(getenv, {"LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"});
  world.local_rank = local_name ? parse_int(local_name, local_value, 0, kMaxRanks) : world.rank;
  if (const char* addr = getenv("MASTER_ADDR"); addr && *addr) {
    world.master_addr = addr;
  } else if (world.size > 1) {
    throw common::UsageError(
        "a world of " + std::to_string(world.size) + " ranks without MASTER_ADDR",
        "set MASTER_ADDR (and MASTER_PORT) to rank 0's host, as torchrun "
        "does; on one machine --nproc N sets them");
  }
  if (const char* port = getenv("MASTER_PORT"); port && *port) {
    world.master_port = parse_int("MASTER_PORT", port, 1, 65535);
  }
  return world;
}

std::vector<std::pair<std::string, std::string>> local_rank_env(int rank, int size, int port) {
  return {{"RANK", std::to_string(rank)},       {"WORLD_SIZE", std::to_string(size)},
          {"LOCAL_RANK", std::to_string(rank)}, {"LOCAL_WORLD_SIZE", std::to_string(size)},
          {"MASTER_ADDR", "127.0.0.1"},         {"MASTER_PORT", std::to_string(port)}};
}

std::string rank_path(const std::string& path, const World& world) {
  std::string out = path;
  bool placed = false;
  auto replace = [&](const std::string& key, int value) {
    for (std::size_t at = out.find(key); at != std::string::npos; at = out.find(key)) {
      out.replace(at, key.size(), std::to_string(value));
      placed = true;
    }
  };
  replace("{rank}", world.rank);
  replace("{local_rank}", world.local_rank);
  if (placed || !world.distributed()) return out;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out + "/rank-" + std::to_string(world.rank);
}

}  // namespace sparsetrain::fuyou
