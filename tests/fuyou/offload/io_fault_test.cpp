// A failing disk loses nothing (common/fault_injection.h): a small offloaded fine-tune (states
// in the store under a CPU budget below them, --accum 2, clipping) is run once per injected fault
// — the n-th read or write failing with EIO, ENOSPC or a torn (short) transfer, the n-th sync
// failing or silently dropped — and after each:
//   - the run stops with one line naming the operation, the file and the errno;
//   - the store opens at its last committed step with every checksum valid;
//   - resuming it (or, with nothing committed, starting again) ends at the uninterrupted run's
//     weights, bit for bit.
// Every index of the whole run's operations is tried (190 faults, a few seconds), with two store
// slots (copy on write) and with one (in place, through the step journal);
// SPARSETRAIN_FAULT_SWEEP=N spreads N per kind evenly instead (first and last included).
#include <ATen/ATen.h>
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/fault_injection.h"
#include "fuyou/model/demo_text.h"
#include "fuyou/model/model_weights.h"
#include "fuyou/offload/offload_test_support.h"
#include "fuyou/offload/offload_trainer.h"
#include "fuyou/store/tensor_store.h"
#include "fuyou/test_util.h"
#include "fuyou/train/in_memory_trainer.h"

using namespace sparsetrain::fuyou;
using offload_test::bitwise_equal;
namespace common = sparsetrain::common;
namespace io = sparsetrain::common::io;
namespace fs = std::filesystem;

namespace {

const bool kOneThread = [] {
  if (std::getenv("OMP_NUM_THREADS") == nullptr) at::set_num_threads(1);
  return true;
}();

struct Run {
  ModelConfig config = model_config_from_name("custom:L=2,C=32,H=2,V=256,T=32");
  std::pair<TokenData, TokenData> data = TokenData::from_bytes(std::string(demo_text())).split(0.1);
  TrainOptions options = [] {
    TrainOptions o;
    o.steps = 3;
    o.accum = 2;
    o.grad_clip = 0.5;
    o.micro_batch = 2;
    o.seq = 16;
    o.lr = 1e-2;
    o.warmup = 1;
    o.eval_every = 0;
    o.eval_batches = 1;
    o.seed = 11;
    return o;
  }();
  ModelWeights initial() const { return init_model_weights(config, 4, at::TensorOptions()); }
  // States in the store: a CPU budget below them (the fixture's 1200 KiB rule of thumb).
  std::int64_t store_slots = 2;  // 2: copy on write; 1: in place, with the step journal
  OffloadOptions offload(const fs::path& root, bool resume) const {
    // Below the states (~420 KiB), above what each layout stages.
    OffloadOptions o =
        offload_test::striped_store_options(root, store_slots == 1 ? 480 << 10 : 340 << 10);
    o.resume = resume;
    o.store_slots = store_slots;
    return o;
  }
};

// Indices 1 … total spread evenly, `per_kind` of them (all with 0), first and last included.
std::vector<std::uint64_t> spread(std::uint64_t total, std::uint64_t per_kind) {
  std::set<std::uint64_t> out;
  if (per_kind == 0 || per_kind >= total) {
    for (std::uint64_t i = 1; i <= total; ++i) out.insert(i);
  } else {
    for (std::uint64_t k = 0; k < per_kind; ++k)
      out.insert(1 + k * (total - 1) / (per_kind - 1 == 0 ? 1 : per_kind - 1));
  }
  return {out.begin(), out.end()};
}

std::uint64_t per_kind_from_env() {
  const char* sweep = std::getenv("SPARSETRAIN_FAULT_SWEEP");
  if (sweep == nullptr || *sweep == '\0' || std::string(sweep) == "all") return 0;
  return std::strtoull(sweep, nullptr, 10);
}

}  // namespace

TEST_CASE(
    "every injected I/O fault leaves the store at its last commit; resuming ends bit for bit") {
  Run run;
  SUBCASE("two store slots (copy on write)") { run.store_slots = 2; }
  SUBCASE("one store slot (in place)") { run.store_slots = 1; }
  CAPTURE(run.store_slots);
  InMemoryTrainer reference(run.config, run.initial(), run.options);
  reference.train(run.data.first, run.data.second);

  // The uninterrupted offloaded run: the same weights, and the operations to fail.
  common::set_io_fault({});
  const fs::path clean = fuyou_test::fresh_dir("fault-clean");
  common::IoOpCounts counts;
  {
    OffloadTrainer t(run.config, run.initial(), run.options, run.offload(clean, false));
    REQUIRE_FALSE(t.plan().states_in_cpu);
    t.train(run.data.first, run.data.second);
    counts = common::io_op_counts();  // the run's own, before read_master reads the store
    REQUIRE(bitwise_equal(t.read_master(), reference.master()));
  }
  MESSAGE("a whole run: " << counts.reads << " reads, " << counts.writes << " writes, "
                          << counts.syncs << " syncs");
  REQUIRE(counts.writes > 0);
  REQUIRE(counts.syncs > 0);

  struct Kind {
    common::FaultOp op;
    common::FaultKind kind;
    std::uint64_t total;
    const char* errno_text;
  };
  const std::vector<Kind> kinds = {
      {common::FaultOp::kWrite, common::FaultKind::kEio, counts.writes, std::strerror(EIO)},
      {common::FaultOp::kWrite, common::FaultKind::kEnospc, counts.writes, std::strerror(ENOSPC)},
      {common::FaultOp::kWrite, common::FaultKind::kShort, counts.writes, std::strerror(EIO)},
      {common::FaultOp::kRead, common::FaultKind::kEio, counts.reads, std::strerror(EIO)},
      {common::FaultOp::kRead, common::FaultKind::kShort, counts.reads, std::strerror(EIO)},
      {common::FaultOp::kSync, common::FaultKind::kEio, counts.syncs, std::strerror(EIO)},
      {common::FaultOp::kSync, common::FaultKind::kNoSync, counts.syncs, nullptr},
  };
  const std::uint64_t per_kind = per_kind_from_env();
  std::map<std::string, int> tried, intact;
  for (const Kind& k : kinds) {
    for (const std::uint64_t n : spread(k.total, per_kind)) {
      const common::IoFault fault{k.op, n, k.kind};
      const std::string name = common::io_fault_name(fault);
      CAPTURE(name);
      const std::string kind_name =
          name.substr(0, name.find(':')) + ":" + name.substr(name.rfind(':') + 1);
      ++tried[kind_name];
      const fs::path root = fuyou_test::fresh_dir("fault");
      const OffloadOptions fresh = run.offload(root, false);
      common::set_io_fault(fault);
      bool failed = false;
      try {
        OffloadTrainer t(run.config, run.initial(), run.options, fresh);
        t.train(run.data.first, run.data.second);
      } catch (const sparsetrain::common::Error& e) {
        failed = true;
        const std::string message = e.what();
        CAPTURE(message);
        CHECK(message.find('\n') == std::string::npos);
        CHECK(message.find("injected fault") != std::string::npos);
        CHECK(message.find(root.string()) != std::string::npos);  // the file
        if (k.errno_text) CHECK(message.find(k.errno_text) != std::string::npos);
      }
      common::set_io_fault({});
      // A dropped sync is invisible without a power cut: the run goes on.
      CHECK(failed == (k.kind != common::FaultKind::kNoSync));

      // The store opens at its last commit, every checksum valid; the run goes on from there.
      // In place (one slot), the states' bytes since that commit are the step journal's to vouch
      // for (tensor_store.h: in-place tensors): the resume adopts or rewrites them, and only then
      // does every checksum match.
      bool committed = false;
      if (fs::exists(root / "a" / TensorStore::kManifestName)) {
        auto store = TensorStore::open(fresh.ssd_dirs);
        if (run.store_slots == 2) CHECK(store->verify().ok());
        committed = store->contains("train.state");
      }
      bool same = false;
      {
        OffloadTrainer again(run.config, committed ? ModelWeights{} : run.initial(), run.options,
                             run.offload(root, committed));
        again.train(run.data.first, run.data.second);
        same = bitwise_equal(again.read_master(), reference.master());
        CHECK(same);
      }
      const VerifyReport after = TensorStore::open(fresh.ssd_dirs)->verify();
      CHECK(after.ok());
      same = same && after.ok();
      if (same) ++intact[kind_name];
      fs::remove_all(root);
    }
  }
  for (const auto& [kind, n] : tried)
    MESSAGE(run.store_slots << " slot(s), " << kind << ": " << n << " faults, " << intact[kind]
                            << " ended at the same weights");
  fs::remove_all(clean);
}
