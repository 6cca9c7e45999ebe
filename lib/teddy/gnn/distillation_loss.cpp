// KL distillation loss (see distillation_loss.h).
#include "teddy/gnn/distillation_loss.h"

#include <torch/torch.h>

namespace sparsetrain::teddy {

at::Tensor distillation_loss(const at::Tensor& student, const at::Tensor& teacher,
                             double temperature) {
  const at::Tensor log_s = torch::log_softmax(student / temperature, 1);
  const at::Tensor log_t = torch::log_softmax(teacher.detach() / temperature, 1);
  // Σ p_t · (log p_t − log p_s), all nodes and classes.
  const at::Tensor kl = (log_t.exp() * (log_t - log_s)).sum();
  return kl / static_cast<double>(student.size(0)) * (temperature * temperature);
}

}  // namespace sparsetrain::teddy
