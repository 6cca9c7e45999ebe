// Fused AdamW for the CPU: one pass over fp32 master weights and fp32 Adam moments m, v that reads
// gradients in compute precision (fp32 or bf16) and writes the new compute-precision weights in the
// same pass. Semantics exactly those of torch::optim::AdamW (decoupled weight decay, bias
// correction with the 1-based step). Vectorised with AVX-512, AVX2 or scalar code chosen at run
// time (or forced, for tests), multi-threaded over chunks. Not an autograd optimizer: callers own
// the buffers (the offloaded trainer streams them from the SSD store).
//
// Exactness: m and v equal torch::optim::AdamW's bit for bit and every ISA gives the same bits;
// the parameters differ from torch only where torch's MKL sqrt is 1 ulp off (see cpu_adam.cpp),
// 5e-8 max-norm relative after 100 steps. Parameter groups: one call per group with its options.
// Threads: at::parallel_for over 16384-element blocks, so at::set_num_threads sets how many; runs
// under 65536 elements stay on the calling thread. Memory traffic per element: read 12 + grad
// (2 or 4), write 12 + weights (0, 2 or 4) bytes; with n >= 2^20 per thread the weights are
// written with non-temporal stores (SPARSETRAIN_ADAMW_NT=0 disables that).
#pragma once

#include <cstdint>

namespace at {
class Tensor;
}

namespace sparsetrain::fuyou {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

enum class CpuIsa { kAuto, kScalar, kAvx2, kAvx512 };

// The best ISA this CPU supports; kAuto resolves to it.
CpuIsa detect_cpu_isa();
const char* cpu_isa_name(CpuIsa isa);

// One AdamW step on n elements. step: 1-based count of steps taken including this one.
// master, m, v: fp32 [n], updated in place. grad: [n], fp32 (grad_bf16 == false) or bf16 bits.
// weights_out: [n] compute-precision copy of the new master (fp32 or bf16 bits per weights_bf16),
// or nullptr. Throws UsageError for an ISA this CPU lacks.
void adamw_step_raw(const AdamWOptions& options, std::int64_t step, std::int64_t n, float* master,
                    float* m, float* v, const void* grad, bool grad_bf16, void* weights_out,
                    bool weights_bf16, CpuIsa isa = CpuIsa::kAuto);

// Tensor form: master, m, v contiguous fp32 CPU tensors of one shape; grad and weights_out (may be
// undefined) contiguous CPU tensors of that numel in fp32 or bf16. TORCH_CHECKs shapes and dtypes.
void adamw_step(const AdamWOptions& options, std::int64_t step, at::Tensor& master, at::Tensor& m,
                at::Tensor& v, const at::Tensor& grad, at::Tensor* weights_out,
                CpuIsa isa = CpuIsa::kAuto);

}  // namespace sparsetrain::fuyou
