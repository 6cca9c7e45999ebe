// TEDDY's distillation term: λ · KL(softmax(t/T) ‖ softmax(s/T)) summed over all nodes and
// classes, divided by N, times T² (Hinton's scaling; T = 1 as the official code leaves it).
#pragma once

#include <ATen/core/Tensor.h>

namespace sparsetrain::teddy {

// student, teacher: [N, classes] logits (teacher needs no grad). Returns a scalar (without λ).
at::Tensor distillation_loss(const at::Tensor& student, const at::Tensor& teacher,
                             double temperature = 1.0);

}  // namespace sparsetrain::teddy
