// RankGroup over c10d's TCPStore and ProcessGroupGloo (see rank_group.h).
//
// Gloo's headers: c10d's ProcessGroupGloo.hpp includes them for declarations only. The torch
// wheel has Gloo compiled into libtorch_cpu but ships no gloo/ headers, so the build takes
// Debian's libgloo-dev (an older Gloo: ProcessGroupGloo.hpp guards the newer Store API with
// GLOO_STORE_HAS_STORE_V2). Nothing here constructs a Gloo type or calls an inline Gloo
// function: every Gloo object is made inside libtorch (its device, store adapter and contexts),
// so only libtorch's own Gloo ever runs and the layouts of the two versions never meet.
#include "fuyou/dist/rank_group.h"

#include <torch/torch.h>

#include <map>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "common/error.h"

namespace sparsetrain::fuyou {

namespace {

// Tensors up to this size share one flat buffer per collective; larger ones go alone.
constexpr std::int64_t kFlatBytes = std::int64_t{16} << 20;

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string string_of(const std::vector<std::uint8_t>& b) { return {b.begin(), b.end()}; }

}  // namespace

struct RankGroup::Impl {
  World world;
  RankGroupOptions options;
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;

  [[noreturn]] void collective_failed(const std::exception& e) const {
    throw common::RunError("rank " + std::to_string(world.rank) + " of " +
                               std::to_string(world.size) +
                               ": a collective over the ranks failed: " + first_line(e.what()),
                           "a rank stopped or timed out: see its error; --resume continues "
                           "every rank from the last committed step");
  }
  void all_reduce(at::Tensor& t) {
    std::vector<at::Tensor> one{t};
    try {
      gloo->allreduce(one)->wait(options.timeout);
    } catch (const std::exception& e) {
      collective_failed(e);
    }
  }
};

RankGroup::RankGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RankGroup::~RankGroup() = default;

std::shared_ptr<RankGroup> RankGroup::connect(const World& world, const RankGroupOptions& options) {
  if (options.backend == "nccl") {
    throw common::EnvironmentError(
        "--dist-backend nccl: this build has no NCCL process group",
        "pass --dist-backend gloo (CUDA gradients are summed through the host)");
  }
  if (options.backend != "gloo") {
    throw common::UsageError("unknown --dist-backend '" + options.backend + "'",
                             "pass --dist-backend gloo or nccl");
  }
  auto impl = std::make_unique<Impl>();
  impl->world = world;
  impl->options = options;
  const std::string where = world.master_addr + ":" + std::to_string(world.master_port);
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(world.master_port);
  store_options.isServer = world.rank == 0;
  store_options.numWorkers = world.size;
  store_options.waitWorkers = true;
  store_options.timeout = options.timeout;
  try {
    impl->store = c10::make_intrusive<c10d::TCPStore>(world.master_addr, store_options);
  } catch (const std::exception& e) {
    const double seconds = static_cast<double>(options.timeout.count()) / 1000.0;
    throw common::EnvironmentError(
        world.rank == 0
            ? "rank 0 cannot serve the rendezvous at " + where +
                  " (or not every rank came within " + std::to_string(seconds) +
                  " s): " + first_line(e.what())
            : "rank " + std::to_string(world.rank) + " cannot reach the master at " + where +
                  " within " + std::to_string(seconds) + " s: " + first_line(e.what()),
        "check MASTER_ADDR and MASTER_PORT, that rank 0 runs and that the port is free; "
        "--dist-timeout waits longer");
  }
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
  try {
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (world.loopback()) {
      gloo_options->devices.push_back(
          c10d::ProcessGroupGloo::createDeviceForHostname(world.master_addr));
    } else {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    impl->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, world.rank, world.size,
                                                             gloo_options);
  } catch (const std::exception& e) {
    throw common::EnvironmentError("rank " + std::to_string(world.rank) +
                                       " cannot join the Gloo group through " + where + ": " +
                                       first_line(e.what()),
                                   "set GLOO_SOCKET_IFNAME to the interface the ranks share");
  }
  return std::shared_ptr<RankGroup>(new RankGroup(std::move(impl)));
}

int RankGroup::rank() const { return impl_->world.rank; }
int RankGroup::size() const { return impl_->world.size; }

void RankGroup::sum(const std::vector<at::Tensor>& tensors) {
  // Small tensors of one device and dtype go in one flat buffer (the sum is element-wise: the
  // same additions either way); each large one goes alone, in place when contiguous.
  std::map<std::pair<int, int>, std::vector<at::Tensor>> small;  // (device type, dtype)
  for (const at::Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (t.nbytes() > static_cast<std::size_t>(kFlatBytes)) {
      at::Tensor buffer = t.is_contiguous() ? t : t.contiguous();
      impl_->all_reduce(buffer);
      if (!buffer.is_same(t)) t.copy_(buffer);
      continue;
    }
    small[{static_cast<int>(t.device().type()), static_cast<int>(t.scalar_type())}].push_back(t);
  }
  for (auto& [key, group] : small) {
    std::vector<at::Tensor> flat;
    for (const at::Tensor& t : group) flat.push_back(t.reshape({-1}));
    at::Tensor buffer = at::cat(flat);
    impl_->all_reduce(buffer);
    std::int64_t at = 0;
    for (at::Tensor& t : group) {
      t.copy_(buffer.slice(0, at, at + t.numel()).view(t.sizes()));
      at += t.numel();
    }
  }
}

double RankGroup::sum(double value) {
  at::Tensor t = at::full({1}, value, at::TensorOptions().dtype(at::kDouble));
  impl_->all_reduce(t);
  return t.item<double>();
}

std::vector<std::string> RankGroup::exchange(const std::string& what, const std::string& value) {
  const std::string prefix = "sparsetrain/exchange/" + what + "/";
  std::vector<std::string> out;
  try {
    impl_->store->set(prefix + std::to_string(rank()), bytes_of(value));
    for (int r = 0; r < size(); ++r)
      out.push_back(string_of(impl_->store->get(prefix + std::to_string(r))));
  } catch (const std::exception& e) {
    impl_->collective_failed(e);
  }
  return out;
}

void RankGroup::check_same(const std::string& what, const std::string& value,
                           const std::string& hint) {
  const std::vector<std::string> all = exchange(what, value);
  for (int r = 1; r < size(); ++r) {
    if (all[static_cast<std::size_t>(r)] != all[0]) {
      throw common::UsageError(
          "rank " + std::to_string(r) + "'s " + what + " differs from rank 0's", hint);
    }
  }
}

std::vector<std::string> RankGroup::gather_to_first(const std::string& what,
                                                    const std::string& value) {
  const std::string prefix = "sparsetrain/gather/" + what + "/";
  std::vector<std::string> out;
  try {
    impl_->store->set(prefix + std::to_string(rank()), bytes_of(value));
    if (rank() != 0) return out;
    for (int r = 0; r < size(); ++r)
      out.push_back(string_of(impl_->store->get(prefix + std::to_string(r))));
  } catch (const std::exception& e) {
    impl_->collective_failed(e);
  }
  return out;
}

}  // namespace sparsetrain::fuyou
