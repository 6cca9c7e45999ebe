// Finding graph lottery tickets — a sparse graph plus sparse weights that train to the dense
// accuracy — with TEDDY and two baselines, at one or more (graph, weight) sparsity levels, over
// several seeds. This is the engine of `sparsetrain teddy run`; it trains, it does not write files.
//
//   teddy   per seed: a dense teacher on the full graph; the TEDDY edge score once; per level a
//           one-shot edge prune and a student (same seed, same init) trained on the pruned graph
//           with the l0 projection after every step and λ · KL(teacher ‖ student).
//   random  per seed and level: random edges (seeded uniform scores, nested levels) and a random
//           fixed weight mask over the projection set, trained plainly.
//   ugs     Unified GNN Sparsification (Chen et al. 2021; the rounds are ugs.h): per seed, one
//           round per level in order (levels ascending: paper levels are 5 % of the remaining
//           edges and 20 % of the remaining weights per round) — learnable edge and weight masks
//           trained with L1 penalties (s1, s2) from the rewound init, the lowest |mask| pruned to
//           the level, the ticket rewound and retrained with the fixed masks.
//   wdglt   WD-GLT (Hui et al. 2023; wd_glt.h): UGS's rounds with the mask search's L1 penalties
//           replaced by a Wasserstein term that pushes the predicted classes apart.
//
// Graph sparsity counts pruned undirected edges over all of them (self loops included, as
// `teddy prune` does); weight sparsity is the zero fraction of the projection set (teddy,
// random) or of the weight matrices (ugs, wdglt).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "teddy/gnn/gnn_model.h"
#include "teddy/gnn/gnn_trainer.h"
#include "teddy/gnn/wd_glt.h"
#include "teddy/graph/graph.h"

namespace sparsetrain::teddy {

struct SparsityLevel {
  double graph = 0;   // fraction of undirected edges to prune
  double weight = 0;  // fraction of weights to zero
};

// Paper level k (1-based): graph 1 − 0.95^k, weights 1 − 0.8^k.
SparsityLevel paper_level(int k);

struct TicketOptions {
  std::string model = "gcn";
  std::string method = "teddy";  // teddy | random | ugs | wdglt
  GnnOptions gnn;
  TrainOptions train;                 // epochs, lr, weight decay, projection set, λ, T
  std::vector<SparsityLevel> levels;  // ascending for ugs and wdglt; empty = dense only
  int seeds = 1;
  std::uint64_t seed = 0;  // seed i uses seed + i
  double ugs_s1 = 1e-2;    // L1 weight on the edge mask
  double ugs_s2 = 1e-2;    // L1 weight on the weight masks
  WdGltOptions wdglt;      // λ and the Sinkhorn iterations of method wdglt
  std::string split = "public";
};

struct LevelResult {
  SparsityLevel target;
  double graph_sparsity = 0;           // achieved (same for every seed except random)
  double weight_sparsity = 0;          // achieved, mean over seeds
  std::vector<double> test, valid;     // [seeds] accuracy at the best-validation epoch
  std::vector<double> ticket_seconds;  // [seeds] wall time to find and train the ticket
  double macs = 0;                     // inference MACs (mean over seeds)
};

struct TicketReport {
  std::vector<double> dense_test, dense_valid, dense_seconds;  // [seeds]
  double dense_macs = 0;
  std::int64_t num_edges = 0;
  std::vector<LevelResult> levels;
  TrainPhases phases;  // CPU seconds per training phase, summed over every training
};

// `progress(done, total)` is called after each training; may be empty.
TicketReport find_tickets(const Graph& graph, const TicketOptions& options,
                          const std::function<void(int, int)>& progress = {});

// The trainings find_tickets runs (progress's `total`): per seed the dense one, then one per level
// (two for ugs and wdglt: mask search and retraining).
int count_trainings(const TicketOptions& options);

double mean(const std::vector<double>& v);
double stddev(const std::vector<double>& v);  // population std (numpy's default)

}  // namespace sparsetrain::teddy
