// Where this process stands in a data-parallel job, read from the environment the launchers set:
// torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), Slurm's srun (SLURM_PROCID,
// SLURM_NTASKS, SLURM_LOCALID) and mpirun-style launchers (OMPI_COMM_WORLD_*, PMI_RANK/PMI_SIZE),
// or `fuyou finetune --nproc N`, which sets torchrun's variables for the ranks it spawns.
// Torch-free.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace sparsetrain::fuyou {

struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;                     // this machine's rank of it: the GPU it uses
  std::string master_addr = "127.0.0.1";  // rank 0's host: the TCPStore and the rendezvous
  int master_port = 29500;
  bool distributed() const { return size > 1; }
  bool loopback() const;  // master_addr is 127.x, ::1 or localhost: every rank on this machine
};

// The world the environment describes (`getenv` for tests); one process when no launcher set it.
// UsageError naming the variable for a value that is not a number, a rank outside [0, size), a
// world of several ranks without MASTER_ADDR, or a port outside 1 … 65535.
World world_from_env(const std::function<const char*(const char*)>& getenv = nullptr);

// The environment of rank `rank` of `size` spawned on this machine (--nproc): torchrun's variables.
std::vector<std::pair<std::string, std::string>> local_rank_env(int rank, int size, int port);

// `path` for this rank: "{rank}" and "{local_rank}" replaced; without either, and with several
// ranks, the subdirectory rank-<rank> of it (each rank keeps its own store).
std::string rank_path(const std::string& path, const World& world);

}  // namespace sparsetrain::fuyou
