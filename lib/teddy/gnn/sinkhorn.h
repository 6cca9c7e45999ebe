// The entropic optimal-transport (Sinkhorn) distance WD-GLT's mask search maximises between the
// predicted-class groups (wd_glt.h), as the official code computes it (TEDDY repository,
// sinkhorn.py, after Cuturi 2013; log-domain updates):
//   M_ij = ||x_i − y_j||_2 (Euclidean, not squared), uniform weights a = 1/n, b = 1/m,
//   u = 0, v = ε·log b; up to `max_iters` times:
//     u = ε·(log a − LSE_j((−M_ij + v_j)/ε)),  v = ε·(log b − LSE_i((−M_ij + u_i)/ε)),
//   stopping early when both max |Δu|, max |Δv| < `stop`;
//   P = exp((−M + u + v)/ε), distance = Σ_ij P_ij·M_ij (no entropy term, no root).
// Differentiable end to end (autograd through every iteration, as the official code's KeOps
// reductions are). Dense [n, m] matrices: memory 4·n·m bytes per live intermediate.
#pragma once

#include <ATen/core/Tensor.h>

namespace sparsetrain::teddy {

struct SinkhornOptions {
  double eps = 1e-3;
  int max_iters = 10;
  double stop = 1e-5;
};

// x: [n, d], y: [m, d] (n, m >= 1) → scalar tensor.
at::Tensor sinkhorn_distance(const at::Tensor& x, const at::Tensor& y,
                             const SinkhornOptions& options = {});

}  // namespace sparsetrain::teddy
