// CudaTransfer (see cuda_transfer.h).
#include "fuyou/offload/cuda_transfer.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "common/io/aligned_buffer.h"
#include "common/log.h"
#include "common/timer.h"
#include "fuyou/offload/offload_plan.h"

#if SPARSETRAIN_HAVE_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace sparsetrain::fuyou {

// fp32 -> bf16, round to nearest even in integer arithmetic (subnormals kept, NaN -> 0x7FC0): what
// c10::BFloat16 and the CPU AdamW's bf16 output (cpu_adam.cpp) do, whatever instructions this
// torch build would pick for a tensor conversion. Threaded (lib/fuyou compiles with OpenMP).
void fp32_to_bf16_rne(const float* src, std::uint16_t* dst, std::int64_t n) {
  at::parallel_for(0, n, std::int64_t{1} << 16, [src, dst](std::int64_t begin, std::int64_t end) {
    const float* __restrict in = src;
    std::uint16_t* __restrict out = dst;
    for (std::int64_t i = begin; i < end; ++i) {  // branch-free: vectorizes
      std::uint32_t u;
      std::memcpy(&u, in + i, sizeof u);
      const std::uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
      out[i] = static_cast<std::uint16_t>((u & 0x7FFFFFFFu) > 0x7F800000u ? 0x7FC0u : rounded);
    }
  });
}

#if SPARSETRAIN_HAVE_CUDA

struct CudaMarkImpl {
  CudaMarkImpl() = default;
  explicit CudaMarkImpl(unsigned int flags) : event(flags) {}
  at::cuda::CUDAEvent event;  // timing off: cheaper record and sync
};

CudaMark mark_compute_stream() {
  if (c10::cuda::device_count() == 0) return {};
  auto mark = std::make_shared<CudaMarkImpl>();
  mark->event.record(c10::cuda::getCurrentCUDAStream());
  return mark;
}

void reset_cuda_peak_allocated() {
  c10::cuda::CUDACachingAllocator::resetPeakStats(c10::cuda::current_device());
}

std::uint64_t cuda_peak_allocated_bytes() {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::cuda::current_device());
  const auto aggregate = static_cast<std::size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  return static_cast<std::uint64_t>(stats.allocated_bytes[aggregate].peak);
}

namespace {

// For destructors (noexcept): waits for `stream` (and, with `device`, the whole device) without
// throwing. A sticky CUDA error from earlier work is logged, not thrown: throwing here would
// terminate the process during unwinding and hide the first error.
void synchronize_quietly(const c10::cuda::CUDAStream& stream, bool device) {
  cudaError_t err = cudaStreamSynchronize(stream.stream());
  if (err == cudaSuccess && device) err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    common::log_error("CUDA error while releasing transfer buffers: ", cudaGetErrorString(err));
  }
}

}  // namespace

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
  if (impl_) synchronize_quietly(impl_->stream, /*device=*/false);
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

namespace {

c10::cuda::CUDAStream checked_pool_stream() {
  if (c10::cuda::device_count() == 0) {
    throw common::EnvironmentError("the CUDA tier needs a CUDA device and none is visible",
                                   "run on a GPU machine or pass --device cpu");
  }
  return c10::cuda::getStreamFromPool(/*isHighPriority=*/false);
}

class CudaBlockSlots final : public BlockStream::Slots {
 public:
  CudaBlockSlots(const ModelConfig& config, std::int64_t slots, std::int64_t piece_floats,
                 bool scratch, BlockMasterFn master)
      : floats_(config.block_param_count()),
        padded_(unit_padded_params(config, 1)),
        pieces_(unit_pieces(padded_, piece_floats)),
        master_(std::move(master)),
        stream_(checked_pool_stream()) {
    std::vector<std::int64_t> numels;
    for (int i = 0; i < block_tensor_count(config); ++i) {
      std::int64_t n = 1;
      for (std::int64_t d : block_tensor_shape(config, i)) n *= d;
      numels.push_back(n);
    }
    for (const StatePiece& piece : pieces_) spans_.push_back(piece_spans(numels, piece));
    const auto buffer_floats = static_cast<std::size_t>(std::min(piece_floats, padded_));
    // One allocation per tensor, as the resident tier's weights have: the same alignment, so
    // cuBLAS has no reason to pick other kernels than for resident weights.
    const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
    for (std::int64_t s = 0; s < slots; ++s) {
      BlockWeights slot(static_cast<std::size_t>(block_tensor_count(config)));
      for (int i = 0; i < slot.size(); ++i)
        slot[i] = at::empty(block_tensor_shape(config, i), bf16);
      gpu_.push_back(std::move(slot));
    }
    for (auto& buffer : pinned_) buffer = common::io::AlignedBuffer(2 * buffer_floats);
    if (scratch) scratch_ = common::io::AlignedBuffer(4 * buffer_floats, /*pin=*/false);
    uploads_.resize(static_cast<std::size_t>(slots));
    released_.resize(static_cast<std::size_t>(slots));
    // The slots were allocated on the current stream (their memory may have been freed there by
    // work still pending; deterministic mode even fills them there); the copy stream writes them.
    mark_compute_stream()->event.block(stream_);
  }
  ~CudaBlockSlots() override {
    // Nothing may still write or read the slots when their memory goes back to the allocator.
    synchronize_quietly(stream_, /*device=*/true);
  }

  std::int64_t count() const override { return static_cast<std::int64_t>(gpu_.size()); }

  // Piece by piece: reads and converts on the host, then enqueues the piece's upload; the first
  // upload waits, on the GPU, for the compute stream to be done with the slot's last block (its
  // release mark, recorded before BlockStream let this fill start), so the first two pieces'
  // conversions overlap the GPU's work on that block (a third waits on the host for the first's
  // upload, hence for that release: two pinned buffers bound how far the loader runs ahead). The
  // copy stream runs the uploads in order: the last piece's event marks the whole block.
  std::uint64_t fill(std::int64_t slot, std::int64_t block) override {
    const auto s = static_cast<std::size_t>(slot);
    CudaMark last;
    for (const StatePiece& piece : pieces_) {
      const std::vector<TensorSpan>& spans = spans_[static_cast<std::size_t>(piece.index)];
      const std::int64_t n = std::min(piece.floats, floats_ - piece.first);  // weights, no padding
      const std::size_t p = fills_++ % 2;
      CudaTransfer::wait(pinned_uploads_[p]);  // the pinned buffer's last upload has left it
      const float* src = master_(
          block, piece, scratch_.data() ? reinterpret_cast<float*>(scratch_.data()) : nullptr);
      fp32_to_bf16_rne(src, reinterpret_cast<std::uint16_t*>(pinned_[p].data()), n);
      at::Tensor host =
          at::from_blob(pinned_[p].data(), {n}, at::TensorOptions().dtype(at::kBFloat16));
      auto mark = std::make_shared<CudaMarkImpl>();
      {
        c10::cuda::CUDAStreamGuard guard(stream_);
        if (released_[s]) released_[s]->event.block(stream_);
        released_[s].reset();
        for (const TensorSpan& span : spans) {
          at::Tensor& dst = gpu_[s][static_cast<int>(span.tensor)];
          dst.view({-1})
              .narrow(0, span.tensor_offset, span.floats)
              .copy_(host.narrow(0, span.piece_offset, span.floats), /*non_blocking=*/true);
        }
        mark->event.record(stream_);
      }
      pinned_uploads_[p] = mark;
      last = std::move(mark);
      uploaded_bytes_ += 2 * static_cast<std::uint64_t>(n);
    }
    uploads_[s] = std::move(last);
    return 4 * static_cast<std::uint64_t>(padded_);
  }

  const BlockWeights& use(std::int64_t slot) override {
    const auto s = static_cast<std::size_t>(slot);
    uploads_[s]->event.block(c10::cuda::getCurrentCUDAStream());  // a stream wait, not a host one
    return gpu_[s];
  }

  void end_use(std::int64_t slot) override {
    released_[static_cast<std::size_t>(slot)] = mark_compute_stream();
  }

  std::uint64_t uploaded_bytes() const { return uploaded_bytes_.load(); }

 private:
  std::int64_t floats_ = 0, padded_ = 0;
  std::vector<StatePiece> pieces_;              // of a block's states
  std::vector<std::vector<TensorSpan>> spans_;  // per piece: where it meets the block's tensors
  BlockMasterFn master_;
  c10::cuda::CUDAStream stream_;
  std::vector<BlockWeights> gpu_;  // per slot: the block's bf16 tensors
  common::io::AlignedBuffer pinned_[2], scratch_;
  std::size_t fills_ = 0;       // loader thread only
  CudaMark pinned_uploads_[2];  // loader thread only
  // uploads_[s]: written by fill, read by use; released_[s]: written by end_use, read by fill. The
  // BlockStream's mutex orders each write before the other thread's read.
  std::vector<CudaMark> uploads_, released_;
  std::atomic<std::uint64_t> uploaded_bytes_{0};
};

// Streaming in pieces: see make_cuda_piece_slots.
class CudaPieceSlots final : public BlockStream::Slots {
 public:
  CudaPieceSlots(const ModelConfig& config, std::int64_t slots, std::int64_t chunk_floats,
                 BlockStream::RangeReadFn read)
      : config_(config),
        chunk_(std::min<std::int64_t>(chunk_floats, config.max_block_piece_param_count())),
        read_(std::move(read)),
        stream_(checked_pool_stream()) {
    const auto bf16 = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
    for (std::int64_t s = 0; s < slots; ++s) {
      at::Tensor memory = at::empty({config.max_block_piece_param_count()}, bf16);
      views_.push_back(block_piece_views(config, memory));
      memory_.push_back(std::move(memory));
    }
    for (auto& buffer : pinned_)
      buffer = common::io::AlignedBuffer(2 * static_cast<std::size_t>(chunk_));
    scratch_ = common::io::AlignedBuffer(4 * static_cast<std::size_t>(chunk_), /*pin=*/false);
    pieces_.assign(static_cast<std::size_t>(slots), 0);
    uploads_.resize(static_cast<std::size_t>(slots));
    released_.resize(static_cast<std::size_t>(slots));
    mark_compute_stream()->event.block(stream_);  // allocated on the compute stream
  }
  ~CudaPieceSlots() override { synchronize_quietly(stream_, /*device=*/true); }

  std::int64_t count() const override { return static_cast<std::int64_t>(memory_.size()); }

  // Chunk by chunk (at most a state piece of floats): the piece's fp32 master range read into the
  // scratch buffer, converted to bf16 into a pinned buffer, uploaded on the copy stream; the first
  // upload waits, on the GPU, for the slot's last release, as CudaBlockSlots::fill does.
  std::uint64_t fill(std::int64_t slot, std::int64_t access) override {
    const auto s = static_cast<std::size_t>(slot);
    const int piece = BlockStream::access_piece(access);
    const std::int64_t block = BlockStream::access_block(access);
    const std::int64_t first = config_.block_piece_first_param(piece);
    const std::int64_t floats = config_.block_piece_param_count(piece);
    auto* scratch = reinterpret_cast<float*>(scratch_.data());
    CudaMark last;
    for (std::int64_t done = 0; done < floats; done += chunk_) {
      const std::int64_t n = std::min(chunk_, floats - done);
      const std::size_t p = fills_++ % 2;
      read_(block, first + done, n, scratch);
      CudaTransfer::wait(pinned_uploads_[p]);  // the pinned buffer's last upload has left it
      fp32_to_bf16_rne(scratch, reinterpret_cast<std::uint16_t*>(pinned_[p].data()), n);
      const at::Tensor host =
          at::from_blob(pinned_[p].data(), {n}, at::TensorOptions().dtype(at::kBFloat16));
      auto mark = std::make_shared<CudaMarkImpl>();
      {
        c10::cuda::CUDAStreamGuard guard(stream_);
        if (released_[s]) released_[s]->event.block(stream_);
        released_[s].reset();
        memory_[s].narrow(0, done, n).copy_(host, /*non_blocking=*/true);
        mark->event.record(stream_);
      }
      pinned_uploads_[p] = mark;
      last = std::move(mark);
      uploaded_bytes_ += 2 * static_cast<std::uint64_t>(n);
    }
    uploads_[s] = std::move(last);
    pieces_[s] = piece;  // read by use(): BlockStream's mutex orders the two
    return 4 * static_cast<std::uint64_t>(floats);
  }

  const BlockWeights& use(std::int64_t slot) override {
    const auto s = static_cast<std::size_t>(slot);
    uploads_[s]->event.block(c10::cuda::getCurrentCUDAStream());  // a stream wait, not a host one
    return views_[s][static_cast<std::size_t>(pieces_[s])];
  }

  void end_use(std::int64_t slot) override {
    released_[static_cast<std::size_t>(slot)] = mark_compute_stream();
  }

  std::uint64_t uploaded_bytes() const { return uploaded_bytes_.load(); }

 private:
  const ModelConfig config_;
  const std::int64_t chunk_;
  BlockStream::RangeReadFn read_;
  c10::cuda::CUDAStream stream_;
  std::vector<at::Tensor> memory_;      // per slot: bf16, largest piece
  std::vector<BlockPieceViews> views_;  // per slot and piece
  common::io::AlignedBuffer pinned_[2], scratch_;
  std::size_t fills_ = 0;                     // loader thread only
  CudaMark pinned_uploads_[2];                // loader thread only
  std::vector<int> pieces_;                   // per slot: the piece it holds
  std::vector<CudaMark> uploads_, released_;  // as CudaBlockSlots'
  std::atomic<std::uint64_t> uploaded_bytes_{0};
};

}  // namespace

std::unique_ptr<BlockStream::Slots> make_cuda_block_slots(const ModelConfig& config,
                                                          std::int64_t slots,
                                                          std::int64_t piece_floats, bool scratch,
                                                          BlockMasterFn master) {
  return std::make_unique<CudaBlockSlots>(config, slots, piece_floats, scratch, std::move(master));
}

struct CudaInputStash::Impl {
  Impl(std::int64_t layers_, std::vector<std::int64_t> shape_)
      : layers(layers_), shape(std::move(shape_)), stream(checked_pool_stream()) {}
  std::int64_t layers = 0, numel = 0;
  std::vector<std::int64_t> shape;
  c10::cuda::CUDAStream stream;
  common::io::AlignedBuffer host;       // layers × one input (4 KiB aligned each), pinned
  std::size_t stride = 0;               // bytes between two inputs in `host`
  at::Tensor gpu[2];                    // bf16 [B, T, C] each
  CudaMark up[2];                       // the upload into each slot
  std::int64_t pushed = 0, popped = 0;  // this pass
  std::uint64_t down_bytes = 0, up_bytes = 0;

  at::Tensor host_view(std::int64_t layer) {
    return at::from_blob(host.data() + static_cast<std::size_t>(layer) * stride, shape,
                         at::TensorOptions().dtype(at::kBFloat16));
  }
  // Copy stream: after everything enqueued so far on the compute stream.
  void after_compute() { mark_compute_stream()->event.block(stream); }
  void upload(std::int64_t layer) {
    const std::size_t slot = static_cast<std::size_t>(layer % 2);
    c10::cuda::CUDAStreamGuard guard(stream);
    gpu[slot].copy_(host_view(layer), /*non_blocking=*/true);
    auto mark = std::make_shared<CudaMarkImpl>();
    mark->event.record(stream);
    up[slot] = std::move(mark);
    up_bytes += 2 * static_cast<std::uint64_t>(numel);
  }
};

CudaInputStash::CudaInputStash(std::int64_t layers, std::vector<std::int64_t> shape)
    : impl_(std::make_unique<Impl>(layers, std::move(shape))) {
  Impl& s = *impl_;
  s.numel = 1;
  for (std::int64_t d : s.shape) s.numel *= d;
  s.stride = common::io::align_up(2 * static_cast<std::size_t>(s.numel));
  s.host = common::io::AlignedBuffer(static_cast<std::size_t>(layers) * s.stride);
  for (auto& slot : s.gpu) {
    slot = at::empty(s.shape, at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA));
  }
  s.after_compute();  // the slots were allocated on the compute stream; the copy stream writes them
}

CudaInputStash::~CudaInputStash() {
  if (!impl_) return;
  synchronize_quietly(impl_->stream, /*device=*/true);
}

void CudaInputStash::push(std::int64_t layer, const at::Tensor& input) {
  Impl& s = *impl_;
  ST_ASSERT(layer == s.pushed && layer < s.layers && s.popped == 0,
            "block input " + std::to_string(layer) + " pushed out of order");
  ST_ASSERT(input.numel() == s.numel && input.scalar_type() == at::kBFloat16,
            "a block input of another shape or dtype");
  const at::Tensor src = input.contiguous();
  s.after_compute();  // src is complete
  {
    c10::cuda::CUDAStreamGuard guard(s.stream);
    s.host_view(layer).copy_(src, /*non_blocking=*/true);
  }
  src.record_stream(s.stream);  // its memory is not reused before the copy is done
  s.down_bytes += 2 * static_cast<std::uint64_t>(s.numel);
  ++s.pushed;
}

at::Tensor CudaInputStash::pop(std::int64_t layer) {
  Impl& s = *impl_;
  ST_ASSERT(s.pushed == s.layers && layer == s.layers - 1 - s.popped,
            "block input " + std::to_string(layer) + " popped out of order");
  // Every earlier use of the GPU slots (the backward of the block two pops ago) is enqueued.
  s.after_compute();
  if (s.popped == 0) s.upload(layer);   // the first: nothing prefetched it
  if (layer >= 1) s.upload(layer - 1);  // the next one, while this block's backward runs
  ++s.popped;
  const std::size_t slot = static_cast<std::size_t>(layer % 2);
  s.up[slot]->event.block(c10::cuda::getCurrentCUDAStream());
  return s.gpu[slot];
}

void CudaInputStash::end_pass() {
  Impl& s = *impl_;
  ST_ASSERT(s.popped == s.layers, "a block-input pass ended before every input came back");
  s.pushed = s.popped = 0;
}

std::uint64_t CudaInputStash::bytes_down() const { return impl_->down_bytes; }
std::uint64_t CudaInputStash::bytes_up() const { return impl_->up_bytes; }

namespace {

constexpr std::size_t kPartAlign = 256;  // bytes: every dtype's view of a slot stays aligned

std::size_t part_bytes(const at::Tensor& t) {
  return (static_cast<std::size_t>(t.numel()) * t.element_size() + kPartAlign - 1) / kPartAlign *
         kPartAlign;
}

}  // namespace

struct CudaActivationStash::Impl {
  Impl(std::vector<std::uint64_t> bytes_, ActivationStoreIo io_)
      : bytes(std::move(bytes_)), io(std::move(io_)), stream(checked_pool_stream()) {}
  ~Impl() {
    if (!thread.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mutex);
      stop = true;
    }
    cv.notify_all();
    thread.join();
  }
  struct Part {
    std::vector<std::int64_t> shape;
    at::ScalarType dtype = at::kBFloat16;
  };
  std::vector<std::uint64_t> bytes;      // per block: its buffer's size, 0 = not kept here
  std::vector<std::size_t> offset;       // per block: where its buffer starts in `host`
  std::vector<std::vector<Part>> parts;  // per block: what push gave
  std::vector<std::size_t> used;         // per block: the bytes push laid out
  std::vector<std::int64_t> blocks;      // the blocks kept here (either tier), increasing
  ActivationStoreIo io;
  c10::cuda::CUDAStream stream;
  common::io::AlignedBuffer host;  // pinned, every pinned-tier block's buffer
  at::Tensor gpu[2];               // uint8 [the largest buffer] each
  CudaMark up[2];
  std::int64_t slot_block[2] = {-1, -1};  // which block each slot holds (or is loading)
  std::size_t pushed = 0, popped = 0;
  std::uint64_t down_bytes = 0, up_bytes = 0;

  // The store's blocks. Ops of a pass, as input_stash.h's: op i < n writes stored[i], op n + j
  // reads stored[n-1-j]; op i uses staging buffer i % K once op i - K is done. States: 0 pending;
  // 1 copied down (a write: its copy enqueued, `copied[i]` recorded) or read in (a read); 2 written
  // (a write) or uploaded (a read: its upload enqueued, `copied[i]` recorded). A buffer's next user
  // after a read waits for that read's upload on the host (the I/O thread) or follows it on the
  // copy stream (the next pass's copies down).
  std::vector<std::int64_t> stored;    // increasing
  std::vector<std::int64_t> write_op;  // per block: its write op, -1 off the store
  std::vector<common::io::AlignedBuffer> staging;
  std::vector<CudaMark> copied;  // per op (blocking-sync events: the I/O thread sleeps on them)
  std::vector<int> state;        // per op
  std::size_t worker = 0;        // the I/O thread's next op
  bool stop = false;
  std::exception_ptr error;
  std::uint64_t written_bytes = 0, read_bytes = 0;
  double wait_seconds = 0;
  mutable std::mutex mutex;
  std::condition_variable cv;
  std::thread thread;  // started last, by the constructor

  bool in_store(std::int64_t block) const { return write_op[static_cast<std::size_t>(block)] >= 0; }
  // An event the I/O thread waits for: it blocks instead of spinning (a core the CPU AdamW uses).
  static CudaMark io_mark() {
    return std::make_shared<CudaMarkImpl>(cudaEventDisableTiming | cudaEventBlockingSync);
  }
  // Compute thread: rethrows the I/O thread's error (a failed store write or read).
  void rethrow_io_error() {
    if (stored.empty()) return;
    std::lock_guard<std::mutex> lock(mutex);
    if (error) std::rethrow_exception(error);
  }
  std::size_t read_op(std::int64_t block) const {
    return state.size() - 1 - static_cast<std::size_t>(write_op[static_cast<std::size_t>(block)]);
  }
  std::int64_t block_of(std::size_t op) const {
    const std::size_t n = stored.size();
    return stored[op < n ? op : 2 * n - 1 - op];
  }
  bool slot_free(std::size_t op) const {  // under `mutex`
    return op < staging.size() || state[op - staging.size()] == 2;
  }
  // Compute thread: waits (under `lock`) until `ready` or an I/O error, which it rethrows.
  template <typename Ready>
  void wait_for(std::unique_lock<std::mutex>& lock, Ready ready) {
    if (!error && !ready()) {
      common::Timer timer;
      cv.wait(lock, [&] { return error || ready(); });
      wait_seconds += timer.seconds();
    }
    if (error) std::rethrow_exception(error);
  }

  void after_compute() { mark_compute_stream()->event.block(stream); }
  std::byte* host_bytes(std::int64_t block) {
    return host.data() + offset[static_cast<std::size_t>(block)];
  }
  // The pinned bytes block `block`'s upload reads: its buffer, or the staging buffer its read
  // filled (compute thread: the read is in).
  std::byte* upload_source(std::int64_t block) {
    return in_store(block) ? staging[read_op(block) % staging.size()].data() : host_bytes(block);
  }
  bool ready_to_upload(std::int64_t block) {
    if (!in_store(block)) return true;
    std::lock_guard<std::mutex> lock(mutex);
    if (error) std::rethrow_exception(error);
    return state[read_op(block)] == 1;
  }
  void wait_until_read(std::int64_t block) {
    if (!in_store(block)) return;
    std::unique_lock<std::mutex> lock(mutex);
    wait_for(lock, [&] { return state[read_op(block)] == 1; });
  }
  void upload(std::int64_t block) {
    const int slot = static_cast<int>(popped_index(block) % 2);
    c10::cuda::CUDAStreamGuard guard(stream);
    const auto n = static_cast<std::int64_t>(used[static_cast<std::size_t>(block)]);
    const at::Tensor src =
        at::from_blob(upload_source(block), {n}, at::TensorOptions().dtype(at::kByte));
    gpu[slot].slice(0, 0, n).copy_(src, /*non_blocking=*/true);
    CudaMark mark = in_store(block) ? io_mark() : std::make_shared<CudaMarkImpl>();
    mark->event.record(stream);
    up[slot] = mark;
    slot_block[slot] = block;
    up_bytes += static_cast<std::uint64_t>(n);
    if (in_store(block)) {  // its staging buffer is free once this upload is done
      {
        std::lock_guard<std::mutex> lock(mutex);
        copied[read_op(block)] = std::move(mark);
        state[read_op(block)] = 2;
      }
      cv.notify_all();
    }
  }
  // The position of `block` in the backward's order of this stash's blocks (0 = the last block).
  std::size_t popped_index(std::int64_t block) const {
    const auto it = std::find(blocks.begin(), blocks.end(), block);
    return static_cast<std::size_t>(blocks.end() - it) - 1;
  }

  // The I/O thread: the ops in order, each once its input is there and its buffer free.
  void loop() {
    c10::cuda::CUDAGuard device(stream.device_index());  // its event waits: no context on GPU 0
    const std::size_t n = stored.size();
    for (;;) {
      std::size_t op = 0;
      CudaMark before;  // the copy the op's buffer waits for
      {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] {
          if (stop) return true;
          if (error || worker >= state.size()) return false;
          return worker < n ? state[worker] == 1 : slot_free(worker);
        });
        if (stop) return;
        op = worker;
        if (op < n) {
          before = copied[op];  // its copy down
        } else if (op >= staging.size()) {
          before = copied[op - staging.size()];  // the buffer's last copy: down, or up
        }
      }
      try {
        if (before) before->event.synchronize();
        const std::int64_t block = block_of(op);
        // As laid out by this pass's push (set before its write op was published).
        const std::uint64_t size = used[static_cast<std::size_t>(block)];
        std::byte* buffer = staging[op % staging.size()].data();
        if (op < n) {
          io.write(block, buffer, size);
        } else {
          io.read(block, buffer, size);
        }
        {
          std::lock_guard<std::mutex> lock(mutex);
          (op < n ? written_bytes : read_bytes) += size;
          state[op] = op < n ? 2 : 1;
          ++worker;
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        error = std::current_exception();
      }
      cv.notify_all();
    }
  }
};

CudaActivationStash::CudaActivationStash(std::vector<std::uint64_t> bytes, ActivationStoreIo store)
    : impl_(std::make_unique<Impl>(std::move(bytes), std::move(store))) {
  Impl& s = *impl_;
  const std::size_t blocks = s.bytes.size();
  ST_ASSERT(s.io.in_store.empty() || s.io.in_store.size() == blocks,
            "kept activations: a store flag per block");
  std::size_t total = 0, largest = 0, largest_stored = 0;
  s.offset.assign(blocks, 0);
  s.used.assign(blocks, 0);
  s.parts.resize(blocks);
  s.write_op.assign(blocks, -1);
  for (std::size_t l = 0; l < blocks; ++l) {
    if (s.bytes[l] == 0) continue;
    s.blocks.push_back(static_cast<std::int64_t>(l));
    largest = std::max(largest, static_cast<std::size_t>(s.bytes[l]));
    if (!s.io.in_store.empty() && s.io.in_store[l]) {
      s.write_op[l] = static_cast<std::int64_t>(s.stored.size());
      s.stored.push_back(static_cast<std::int64_t>(l));
      largest_stored = std::max(largest_stored, static_cast<std::size_t>(s.bytes[l]));
      continue;
    }
    s.offset[l] = total;
    total += common::io::align_up(static_cast<std::size_t>(s.bytes[l]));
  }
  ST_ASSERT(!s.blocks.empty(), "a kept-activation stash without a block");
  if (total > 0) s.host = common::io::AlignedBuffer(total);  // pinned (registered once)
  for (auto& slot : s.gpu) {
    slot = at::empty({static_cast<std::int64_t>(largest)},
                     at::TensorOptions().dtype(at::kByte).device(at::kCUDA));
  }
  s.after_compute();  // the slots were allocated on the compute stream; the copy stream writes them
  if (s.stored.empty()) return;
  ST_ASSERT(s.io.slots >= 2 && s.io.write && s.io.read,
            "kept activations in the store need two staging buffers and their I/O");
  for (std::int64_t k = 0; k < s.io.slots; ++k) s.staging.emplace_back(largest_stored);  // pinned
  s.copied.resize(2 * s.stored.size());
  s.state.assign(2 * s.stored.size(), 0);
  s.thread = std::thread([&s] { s.loop(); });
}

CudaActivationStash::~CudaActivationStash() {
  if (!impl_) return;
  synchronize_quietly(impl_->stream, /*device=*/true);
  // ~Impl then stops and joins the I/O thread (its waits are for copies now done).
}

void CudaActivationStash::push(std::int64_t block, const std::vector<at::Tensor>& tensors) {
  Impl& s = *impl_;
  const auto b = static_cast<std::size_t>(block);
  ST_ASSERT(s.pushed < s.blocks.size() && s.blocks[s.pushed] == block && s.popped == 0,
            "kept activations of block " + std::to_string(block) + " pushed out of order");
  s.rethrow_io_error();
  std::vector<at::Tensor> srcs;
  std::size_t need = 0;
  for (const at::Tensor& t : tensors) {
    srcs.push_back(t.contiguous());
    need += part_bytes(t);
  }
  ST_ASSERT(need <= s.bytes[b], "block " + std::to_string(block) + " keeps more than planned");
  std::byte* base = nullptr;
  const bool stored = s.in_store(block);
  if (stored) {  // the next staging buffer, once the I/O thread has written what it held
    const auto op = static_cast<std::size_t>(s.write_op[b]);
    std::unique_lock<std::mutex> lock(s.mutex);
    ST_ASSERT(s.state[op] == 0,
              "kept activations of block " + std::to_string(block) + " pushed twice in a pass");
    s.wait_for(lock, [&] { return s.slot_free(op); });
    base = s.staging[op % s.staging.size()].data();
  } else {
    base = s.host_bytes(block);
  }
  s.after_compute();  // the sources are complete
  s.parts[b].clear();
  std::size_t at = 0;
  c10::cuda::CUDAStreamGuard guard(s.stream);
  for (const at::Tensor& src : srcs) {
    at::Tensor dst =
        at::from_blob(base + at, src.sizes(), at::TensorOptions().dtype(src.scalar_type()));
    dst.copy_(src, /*non_blocking=*/true);
    src.record_stream(s.stream);  // its memory is not reused before the copy is done
    s.parts[b].push_back({src.sizes().vec(), src.scalar_type()});
    at += part_bytes(src);
  }
  s.used[b] = at;
  s.down_bytes += at;  // as laid out (block_activations.h: activation_set_bytes)
  ++s.pushed;
  if (stored) {  // the I/O thread writes the buffer once the copies are done
    CudaMark mark = Impl::io_mark();
    mark->event.record(s.stream);
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.copied[static_cast<std::size_t>(s.write_op[b])] = std::move(mark);
      s.state[static_cast<std::size_t>(s.write_op[b])] = 1;
    }
    s.cv.notify_all();
  }
}

std::vector<at::Tensor> CudaActivationStash::pop(std::int64_t block) {
  Impl& s = *impl_;
  ST_ASSERT(s.pushed == s.blocks.size() && s.popped < s.blocks.size() &&
                s.blocks[s.blocks.size() - 1 - s.popped] == block,
            "kept activations of block " + std::to_string(block) + " popped out of order");
  s.rethrow_io_error();
  // This block's slot, when no prefetch filled it (the first pop, or a store read not in at the
  // last pop): its last reader is the block two pops back, whose backward the copy stream has
  // waited for since the last pop (the first pop: for the previous pass, below) — so it is
  // uploaded before the wait for the last block's backward, which the compute stream then does
  // not wait out twice. The slot the prefetch refills was the last pop's: the trainer enqueues
  // that block's whole backward before this pop, so the copy stream, waiting for the compute
  // stream's work so far, refills it only after its last reader.
  const int slot = static_cast<int>(s.popped % 2);
  if (s.popped == 0) s.after_compute();
  if (s.slot_block[slot] != block) {
    s.wait_until_read(block);
    s.upload(block);
  }
  if (s.popped > 0) s.after_compute();
  if (s.popped + 1 < s.blocks.size()) {
    const std::int64_t next = s.blocks[s.blocks.size() - 2 - s.popped];
    if (s.ready_to_upload(next)) s.upload(next);
  }
  ST_ASSERT(s.slot_block[slot] == block, "a kept-activation slot holds another block");
  ++s.popped;
  s.up[slot]->event.block(c10::cuda::getCurrentCUDAStream());
  std::vector<at::Tensor> out;
  std::int64_t at = 0;
  for (const Impl::Part& part : s.parts[static_cast<std::size_t>(block)]) {
    std::int64_t numel = 1;
    for (std::int64_t d : part.shape) numel *= d;
    const std::int64_t n = numel * static_cast<std::int64_t>(c10::elementSize(part.dtype));
    out.push_back(s.gpu[slot].slice(0, at, at + n).view(part.dtype).view(part.shape));
    at += static_cast<std::int64_t>((static_cast<std::size_t>(n) + kPartAlign - 1) / kPartAlign *
                                    kPartAlign);
  }
  return out;
}

void CudaActivationStash::end_pass() {
  Impl& s = *impl_;
  ST_ASSERT(s.popped == s.blocks.size(), "a kept-activation pass ended before every block");
  s.pushed = s.popped = 0;
  s.slot_block[0] = s.slot_block[1] = -1;  // the next pass's first pop uploads afresh
  if (s.stored.empty()) return;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.error) std::rethrow_exception(s.error);
    ST_ASSERT(s.worker == s.state.size() &&
                  std::all_of(s.state.begin(), s.state.end(), [](int st) { return st == 2; }),
              "a kept-activation pass ended before the store's last read");
    std::fill(s.state.begin(), s.state.end(), 0);
    std::fill(s.copied.begin(), s.copied.end(), nullptr);
    s.worker = 0;
  }
  s.cv.notify_all();
}

std::uint64_t CudaActivationStash::bytes_down() const { return impl_->down_bytes; }
std::uint64_t CudaActivationStash::bytes_up() const { return impl_->up_bytes; }
std::uint64_t CudaActivationStash::bytes_written() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->written_bytes;
}
std::uint64_t CudaActivationStash::bytes_read() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->read_bytes;
}
double CudaActivationStash::wait_seconds() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->wait_seconds;
}

std::unique_ptr<BlockStream::Slots> make_cuda_piece_slots(const ModelConfig& config,
                                                          std::int64_t slots,
                                                          std::int64_t chunk_floats,
                                                          BlockStream::RangeReadFn read) {
  return std::make_unique<CudaPieceSlots>(config, slots, chunk_floats, std::move(read));
}

std::uint64_t cuda_block_slots_uploaded_bytes(const BlockStream::Slots& slots) {
  if (const auto* cuda = dynamic_cast<const CudaBlockSlots*>(&slots)) return cuda->uploaded_bytes();
  const auto* pieces = dynamic_cast<const CudaPieceSlots*>(&slots);
  return pieces ? pieces->uploaded_bytes() : 0;
}

#else  // no CUDA in this build

struct CudaMarkImpl {};

CudaMark mark_compute_stream() { return {}; }
void reset_cuda_peak_allocated() {}
std::uint64_t cuda_peak_allocated_bytes() { return 0; }

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

std::unique_ptr<BlockStream::Slots> make_cuda_block_slots(const ModelConfig&, std::int64_t,
                                                          std::int64_t, bool, BlockMasterFn) {
  throw common::EnvironmentError("this sparsetrain was built without CUDA",
                                 "rebuild against a CUDA LibTorch or pass --device cpu");
}
std::unique_ptr<BlockStream::Slots> make_cuda_piece_slots(const ModelConfig&, std::int64_t,
                                                          std::int64_t, BlockStream::RangeReadFn) {
  throw common::EnvironmentError("this sparsetrain was built without CUDA",
                                 "rebuild against a CUDA LibTorch or pass --device cpu");
}
std::uint64_t cuda_block_slots_uploaded_bytes(const BlockStream::Slots&) { return 0; }

struct CudaActivationStash::Impl {};
CudaActivationStash::CudaActivationStash(std::vector<std::uint64_t>, ActivationStoreIo) {
  throw common::EnvironmentError("this sparsetrain was built without CUDA",
                                 "rebuild against a CUDA LibTorch or pass --device cpu");
}
CudaActivationStash::~CudaActivationStash() = default;
void CudaActivationStash::push(std::int64_t, const std::vector<at::Tensor>&) {}
std::vector<at::Tensor> CudaActivationStash::pop(std::int64_t) { return {}; }
void CudaActivationStash::end_pass() {}
std::uint64_t CudaActivationStash::bytes_down() const { return 0; }
std::uint64_t CudaActivationStash::bytes_up() const { return 0; }
std::uint64_t CudaActivationStash::bytes_written() const { return 0; }
std::uint64_t CudaActivationStash::bytes_read() const { return 0; }
double CudaActivationStash::wait_seconds() const { return 0; }

struct CudaInputStash::Impl {};
CudaInputStash::CudaInputStash(std::int64_t, std::vector<std::int64_t>) {
  throw common::EnvironmentError("this sparsetrain was built without CUDA",
                                 "rebuild against a CUDA LibTorch or pass --device cpu");
}
CudaInputStash::~CudaInputStash() = default;
void CudaInputStash::push(std::int64_t, const at::Tensor&) {}
at::Tensor CudaInputStash::pop(std::int64_t) { return {}; }
void CudaInputStash::end_pass() {}
std::uint64_t CudaInputStash::bytes_down() const { return 0; }
std::uint64_t CudaInputStash::bytes_up() const { return 0; }

#endif

}  // namespace sparsetrain::fuyou
