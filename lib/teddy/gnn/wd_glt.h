// WD-GLT (Hui et al., "Rethinking Graph Lottery Tickets: Graph Sparsity Matters", ICLR 2023) as
// the official TEDDY repository runs it (main_baseline.py --type wasserstein): UGS's rounds
// (ugs.h) with a different mask-search objective, nothing else. Per training step, with the
// step's training-mode logits Z ([N, classes]) and P = softmax(Z):
//   for each class c with 0 < |{v: argmax Z_v = c}| < N (all nodes, not only the training ones):
//     wd_c = sinkhorn_distance(P[argmax = c], P[argmax != c])     (sinkhorn.h: ε 1e-3, 10 iters)
//   extra loss = −λ · Σ_c wd_c          (λ 0.1: the classes' predictions are pushed apart)
// and after each step the edge mask is clamped to [0, 1]. No L1 penalty; the weight masks are
// not clamped. Masks are pruned by |value| at the best-validation epoch, rewound and retrained
// as for UGS. Our choices where the official code differs from UGS's rounds here are in
// lib/teddy/README.md ("WD-GLT").
#pragma once

#include <memory>

#include "teddy/gnn/sinkhorn.h"
#include "teddy/gnn/ugs.h"

namespace sparsetrain::teddy {

struct WdGltOptions {
  double lambda = 0.1;  // weight of the Wasserstein term (official --wasserstein_lamb)
  SinkhornOptions sinkhorn;
};

std::shared_ptr<const MaskSearchObjective> wasserstein_mask_objective(const WdGltOptions& options);

// −Σ_c wd_c for logits [N, classes] (the term before λ), as above; 0 when every node is predicted
// as one class.
at::Tensor class_separation_loss(const at::Tensor& logits, const SinkhornOptions& options);

}  // namespace sparsetrain::teddy
