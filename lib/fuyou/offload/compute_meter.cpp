// ComputeMeter (see compute_meter.h).
#include "fuyou/offload/compute_meter.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <atomic>
#include <mutex>

#include "common/error.h"
#include "fuyou/offload/cuda_transfer.h"

namespace sparsetrain::fuyou {

namespace {

// In front of the CPU allocator it found first, for good: it forwards every allocation to it and,
// while a meter runs, counts each one's bytes until its deleter runs. An allocation is counted in
// the meter (epoch) that made it only, so one freed under a later meter does not touch that one's
// count; and the object is never destroyed, for tensors freed (or resized: their storage asks the
// allocator that made them) after every meter stopped.
class CountingCpuAllocator final : public c10::Allocator {
 public:
  void start() {
    std::lock_guard<std::mutex> lock(mutex_);
    ST_ASSERT(!active_.load(), "one compute meter at a time");
    if (base_ == nullptr) base_ = c10::GetCPUAllocator();  // set once, read without the lock
    live_ = peak_ = 0;
    epoch_.fetch_add(1);
    active_.store(true);
    c10::SetCPUAllocator(this, /*priority=*/kPriority);
  }
  void stop() {
    std::lock_guard<std::mutex> lock(mutex_);
    active_.store(false);
    c10::SetCPUAllocator(base_, /*priority=*/kPriority);
  }
  std::uint64_t peak() const { return peak_.load(); }

  c10::DataPtr allocate(std::size_t n) override {
    c10::DataPtr inner = base_->allocate(n);
    if (!active_.load()) return inner;
    void* data = inner.get();
    const c10::Device device = inner.device();
    auto* held = new Held{std::move(inner), n, epoch_.load(), this};
    const std::uint64_t now = live_.fetch_add(n) + n;
    std::uint64_t peak = peak_.load();
    while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
    }
    return {data, held, &Held::release, device};
  }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  static constexpr std::uint8_t kPriority = 100;  // above the default's registration
  struct Held {
    c10::DataPtr inner;
    std::size_t bytes;
    std::uint64_t epoch;
    CountingCpuAllocator* owner;
    static void release(void* ctx) {
      auto* h = static_cast<Held*>(ctx);
      if (h->epoch == h->owner->epoch_.load()) h->owner->live_.fetch_sub(h->bytes);
      delete h;  // frees `inner` through the allocator that made it
    }
  };
  std::mutex mutex_;
  c10::Allocator* base_ = nullptr;
  std::atomic<bool> active_{false};
  std::atomic<std::uint64_t> epoch_{0}, live_{0}, peak_{0};
};

CountingCpuAllocator& counting_cpu_allocator() {
  static auto* allocator = new CountingCpuAllocator();  // never destroyed (see above)
  return *allocator;
}

}  // namespace

ComputeMeter::ComputeMeter(bool cuda) : cuda_(cuda) {
  if (cuda_) {
    reset_cuda_peak_allocated();
  } else {
    counting_cpu_allocator().start();
  }
}

ComputeMeter::~ComputeMeter() {
  if (!cuda_) counting_cpu_allocator().stop();
}

std::uint64_t ComputeMeter::peak_bytes() const {
  return cuda_ ? cuda_peak_allocated_bytes() : counting_cpu_allocator().peak();
}

}  // namespace sparsetrain::fuyou
