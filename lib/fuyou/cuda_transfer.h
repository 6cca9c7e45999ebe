// Host <-> GPU copies for the offloaded trainer's CUDA tier, on a copy stream of their own, ordered
// against the compute thread's stream by CUDA events (no CUDA types in this header: callers outside
// CUDA builds still compile). The compute thread only records marks (cudaEventRecord: no wait);
// the optimizer thread, which owns a CudaTransfer, waits on them, downloads gradients into pinned
// host memory and uploads the new compute weights.
// Without CUDA (build or device), constructing a CudaTransfer throws EnvironmentError and
// mark_compute_stream returns an empty mark.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

namespace sparsetrain::fuyou {

struct CudaMarkImpl;
// A point in a stream's work: complete once everything enqueued before it has run.
using CudaMark = std::shared_ptr<CudaMarkImpl>;

// Compute thread: a mark after everything enqueued so far on the current CUDA stream.
CudaMark mark_compute_stream();

class CudaTransfer {
 public:
  CudaTransfer();  // a stream from the pool of the current device
  ~CudaTransfer();
  CudaTransfer(const CudaTransfer&) = delete;
  CudaTransfer& operator=(const CudaTransfer&) = delete;

  // dst[i] (host, pinned, same numel and dtype) <- src[i] (GPU), once `after` is reached; returns
  // when the copies are done (blocks the calling thread, never the compute stream).
  void download(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst,
                const CudaMark& after);
  // dst[i] (GPU) <- src[i] (host, pinned) enqueued on the copy stream; returns a mark for their
  // completion (src must stay untouched until then).
  CudaMark upload(const std::vector<at::Tensor>& src, std::vector<at::Tensor>& dst);
  // Blocks the calling thread until `mark` is reached (no-op for an empty mark).
  static void wait(const CudaMark& mark);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sparsetrain::fuyou
