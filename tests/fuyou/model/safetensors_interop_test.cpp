// safetensors interop with the Python `safetensors` package (the reference implementation): a file
// it writes loads here bit for bit, and a file we write loads there. Both sides compute the
// expected tensors with the same torch ops. Skips (77) without the venv's Python or its safetensors
// package.
#define DOCTEST_CONFIG_IMPLEMENT
#include <ATen/ATen.h>
#include <c10/util/Logging.h>  // before doctest, whose CHECK must replace c10's
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <limits>

#include "cli/process.h"
#include "fuyou/model/safetensors.h"
#include "fuyou/test_util.h"

using namespace sparsetrain::fuyou;
using namespace fuyou_test;
using sparsetrain::test::run_process;

namespace {

// The same tensors as expected() in safetensors_interop.py.
TensorMap expected() {
  at::Tensor f32 = (at::arange(1000, at::kFloat) * 0.37 - 100.0).reshape({10, 100});
  f32[0][0] = std::numeric_limits<float>::quiet_NaN();
  f32[0][1] = -std::numeric_limits<float>::infinity();
  f32[0][2] = -0.0f;
  f32[0][3] = 1e-40f;
  return {{"transformer.h.0.attn.c_attn.weight", f32},
          {"half", (at::arange(257, at::kFloat) * 0.37 - 40.0).to(at::kHalf)},
          {"brain", (at::arange(33, at::kFloat) * -1.37 + 3.0).to(at::kBFloat16).reshape({3, 11})},
          {"scalar", at::scalar_tensor(3.25, at::kFloat)},
          {"empty", at::zeros({0, 4}, at::kBFloat16)}};
}

// Writes our file, then runs Python once: it checks ours and writes its own. Shared by both tests.
struct PythonRound {
  fs::path dir = fresh_dir("st-py");
  std::string ours = (dir / "from_cpp.safetensors").string();
  std::string theirs = (dir / "from_python.safetensors").string();
  sparsetrain::test::ProcessResult result;
  PythonRound() {
    write_safetensors(ours, expected(), {{"format", "pt"}, {"writer", "sparsetrain"}});
    result = run_process(SPARSETRAIN_PYTHON, {SPARSETRAIN_INTEROP_SCRIPT, "both", ours, theirs});
  }
  ~PythonRound() { fs::remove_all(dir); }
};
const PythonRound& python_round() {
  static const PythonRound round;
  return round;
}

}  // namespace

TEST_CASE("a file we write loads bit-exactly in Python's safetensors") {
  const auto& r = python_round().result;
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("ok: 5 tensors bit-exact") != std::string::npos);
}

TEST_CASE("a file written by Python's safetensors loads bit-exactly with its metadata") {
  const auto& round = python_round();
  INFO(round.result.err);
  REQUIRE(round.result.exit_code == 0);
  TensorMap got = read_safetensors(round.theirs);
  TensorMap want = expected();
  REQUIRE(got.size() == want.size());
  for (const auto& [name, w] : want) {
    INFO(name);
    REQUIRE(got.count(name) == 1);
    const at::Tensor& g = got.at(name);
    CHECK((g.scalar_type() == w.scalar_type()));
    CHECK(g.sizes() == w.sizes());
    CHECK((w.nbytes() == 0 || std::memcmp(g.data_ptr(), w.data_ptr(), w.nbytes()) == 0));
  }
  CHECK(read_safetensors_metadata(round.theirs) ==
        std::map<std::string, std::string>{{"format", "pt"}, {"writer", "python"}});
}

int main(int argc, char** argv) {
  if (::access(SPARSETRAIN_PYTHON, X_OK) != 0) {
    std::fprintf(stderr, "skip: no Python at %s (run scripts/setup.sh)\n", SPARSETRAIN_PYTHON);
    return 77;
  }
  auto probe = run_process(SPARSETRAIN_PYTHON, {"-c", "import safetensors"});
  if (probe.exit_code != 0) {
    std::fprintf(stderr, "skip: %s cannot import safetensors (scripts/setup.sh installs it)\n",
                 SPARSETRAIN_PYTHON);
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
