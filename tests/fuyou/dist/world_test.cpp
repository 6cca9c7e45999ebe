// world_from_env and rank_path (fuyou/dist/world.h): the launchers' variables, their errors.
#include "fuyou/dist/world.h"

#include <doctest/doctest.h>

#include <map>
#include <string>

#include "common/error.h"

using sparsetrain::fuyou::rank_path;
using sparsetrain::fuyou::World;
using sparsetrain::fuyou::world_from_env;

namespace {

World world_of(const std::map<std::string, std::string>& env) {
  return world_from_env([&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

}  // namespace

TEST_CASE("no launcher variables mean one process") {
  const World w = world_of({});
  CHECK(w.size == 1);
  CHECK(w.rank == 0);
  CHECK_FALSE(w.distributed());
}

TEST_CASE("torchrun's variables give rank, size, local rank and the master") {
  const World w = world_of({{"RANK", "3"},
                            {"WORLD_SIZE", "4"},
                            {"LOCAL_RANK", "1"},
                            {"MASTER_ADDR", "10.0.0.2"},
                            {"MASTER_PORT", "29511"}});
  CHECK(w.rank == 3);
  CHECK(w.size == 4);
  CHECK(w.local_rank == 1);
  CHECK(w.master_addr == "10.0.0.2");
  CHECK(w.master_port == 29511);
  CHECK_FALSE(w.loopback());
}

TEST_CASE("srun's and mpirun's variables stand in for torchrun's") {
  const World slurm = world_of({{"SLURM_PROCID", "1"},
                                {"SLURM_NTASKS", "2"},
                                {"SLURM_LOCALID", "1"},
                                {"MASTER_ADDR", "127.0.0.1"}});
  CHECK(slurm.rank == 1);
  CHECK(slurm.size == 2);
  CHECK(slurm.local_rank == 1);
  CHECK(slurm.loopback());
  const World mpi = world_of(
      {{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "3"}, {"MASTER_ADDR", "localhost"}});
  CHECK(mpi.rank == 2);
  CHECK(mpi.size == 3);
  CHECK(mpi.local_rank == 2);  // no local rank given: the rank
  CHECK(mpi.master_port == 29500);
}

TEST_CASE("inconsistent launcher variables are usage errors naming the variable") {
  using sparsetrain::common::UsageError;
  CHECK_THROWS_WITH_AS(world_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}}),
                       doctest::Contains("RANK='x'"), UsageError);
  CHECK_THROWS_WITH_AS(world_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}}),
                       doctest::Contains("not below WORLD_SIZE"), UsageError);
  CHECK_THROWS_WITH_AS(world_of({{"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}}),
                       doctest::Contains("no RANK"), UsageError);
  CHECK_THROWS_WITH_AS(world_of({{"RANK", "1"}}), doctest::Contains("no WORLD_SIZE"), UsageError);
  CHECK_THROWS_WITH_AS(world_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}}),
                       doctest::Contains("without MASTER_ADDR"), UsageError);
  const std::map<std::string, std::string> bad_port = {
      {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "70000"}};
  CHECK_THROWS_WITH_AS(world_of(bad_port), doctest::Contains("MASTER_PORT='70000'"), UsageError);
  // One rank of one needs no master.
  CHECK(world_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}}).size == 1);
}

TEST_CASE("rank_path gives each rank its own directory") {
  World w;
  CHECK(rank_path("/mnt/a", w) == "/mnt/a");  // one process: as given
  w.size = 4;
  w.rank = 2;
  w.local_rank = 0;
  CHECK(rank_path("/mnt/a/", w) == "/mnt/a/rank-2");
  CHECK(rank_path("/mnt/nvme{local_rank}/run{rank}", w) == "/mnt/nvme0/run2");
}
