// CudaTransfer (see cuda_transfer.h).
#include "fuyou/cuda_transfer.h"

#include "common/error.h"

#if SPARSETRAIN_HAVE_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace sparsetrain::fuyou {

#if SPARSETRAIN_HAVE_CUDA

struct CudaMarkImpl {
  at::cuda::CUDAEvent event;  // timing off: cheaper record and sync
};

CudaMark mark_compute_stream() {
  if (c10::cuda::device_count() == 0) return {};
  auto mark = std::make_shared<CudaMarkImpl>();
  mark->event.record(c10::cuda::getCurrentCUDAStream());
  return mark;
}

struct CudaTransfer::Impl {
  c10::cuda::CUDAStream stream;
};

CudaTransfer::CudaTransfer() {
  if (c10::cuda::device_count() == 0) {
    throw common::EnvironmentError("the CUDA tier needs a CUDA device and none is visible",
                                   "run on a GPU machine or pass --device cpu");
  }
  impl_ = std::make_unique<Impl>(Impl{c10::cuda::getStreamFromPool(/*isHighPriority=*/false)});
}

CudaTransfer::~CudaTransfer() {
  if (impl_) impl_->stream.synchronize();
}

void CudaTransfer::download(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst,
                            const CudaMark& after) {
  ST_ASSERT(src.size() == dst.size(), "download: tensor lists differ in length");
  c10::cuda::CUDAStreamGuard guard(impl_->stream);
  if (after) after->event.block(impl_->stream);
  for (std::size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i], /*non_blocking=*/true);
  impl_->stream.synchronize();
}

CudaMark CudaTransfer::upload(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst) {
  ST_ASSERT(src.size() == dst.size(), "upload: tensor lists differ in length");
  c10::cuda::CUDAStreamGuard guard(impl_->stream);
  for (std::size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i], /*non_blocking=*/true);
  auto mark = std::make_shared<CudaMarkImpl>();
  mark->event.record(impl_->stream);
  return mark;
}

void CudaTransfer::wait(const CudaMark& mark) {
  if (mark) mark->event.synchronize();
}

#else  // no CUDA in this build

struct CudaMarkImpl {};

CudaMark mark_compute_stream() { return {}; }

struct CudaTransfer::Impl {};

CudaTransfer::CudaTransfer() {
  throw common::EnvironmentError("this sparsetrain was built without CUDA",
                                 "rebuild against a CUDA LibTorch or pass --device cpu");
}
CudaTransfer::~CudaTransfer() = default;
void CudaTransfer::download(const std::vector<at::Tensor>&, std::vector<at::Tensor>&,
                            const CudaMark&) {}
CudaMark CudaTransfer::upload(const std::vector<at::Tensor>&, std::vector<at::Tensor>&) {
  return {};
}
void CudaTransfer::wait(const CudaMark&) {}

#endif

}  // namespace sparsetrain::fuyou
