// `fuyou finetune` across ranks: the flags (--nproc, --dist-backend, --dist-timeout, --log-ranks),
// the local launcher behind --nproc, and a rank's joining of its group (fuyou/dist). CLI wiring:
// the collectives live in lib/fuyou/dist.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cli.h"
#include "fuyou/dist/rank_group.h"
#include "fuyou/dist/world.h"

namespace sparsetrain::cli {

struct RankFlags {
  int nproc = 1;                 // --nproc: ranks to spawn on this machine (1: none)
  std::string backend = "gloo";  // --dist-backend
  double timeout_s = 300;        // --dist-timeout: rendezvous and each collective
  std::string log_ranks = "0";   // --log-ranks: 0 (rank 0 logs and shows progress) or all
};

void add_rank_flags(CLI::App& sub, RankFlags& flags);

// --nproc N: runs this command line (without --nproc) as ranks 0 … N-1 on this machine, with
// torchrun's environment and a free loopback port, and waits for them: the first rank to fail
// stops the others (SIGTERM), as does a SIGINT/SIGTERM here. Throws an Error with the exit code
// of the first rank that failed (naming it); the ranks write the records, this process none.
void run_local_ranks(const RankFlags& flags, CommandContext& context);
// Whether this process is to launch --nproc ranks (not: it is one of them).
bool spawns_local_ranks(const RankFlags& flags);

// This process's place in the job (fuyou/dist/world.h) and, with several ranks, its group:
// connected, the command line checked equal on every rank, logs and progress quiet on ranks
// > 0 (unless --log-ranks all), the record of rank r > 0 moved beside --out (NAME.rank<r>.json).
struct JoinedRanks {
  fuyou::World world;
  std::shared_ptr<fuyou::RankGroup> group;  // none for one process
};
JoinedRanks join_ranks(const RankFlags& flags, CommandContext& context);

// After the run, on every rank (a collective): rank 0's record gains "ranks", each rank's metrics.
void merge_rank_records(const JoinedRanks& ranks, CommandContext& context);

}  // namespace sparsetrain::cli
