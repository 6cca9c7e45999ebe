#include "common/progress.h"

#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "common/error.h"

using namespace sparsetrain::common;

TEST_CASE("a progress line shows fraction, counts, rate and ETA") {
  set_progress_mode(ProgressMode::kNever);
  Progress p("score", /*total=*/10'000'000, "edges");
  const std::string line = p.render(/*done=*/5'000'000, /*elapsed=*/2.0, /*bar=*/true);
  CHECK(line ==
        "score  [##########..........]   50%  5.00M/10.00M edges  2.50M edges/s  ETA 2.0 s");
  const std::string plain = p.render(5'000'000, 2.0, /*bar=*/false);
  CHECK(plain.find('[') == std::string::npos);
  CHECK(plain.find("ETA 2.0 s") != std::string::npos);
}

TEST_CASE("a progress line without a total has no ETA; bytes use binary units") {
  set_progress_mode(ProgressMode::kNever);
  Progress p("write", /*total=*/0, "B");
  const std::string line = p.render(3ull << 30, 2.0, true);
  CHECK(line == "write  3.00 GiB   1.50 GiB/s");
}

TEST_CASE("progress modes parse") {
  CHECK(parse_progress_mode("always") == ProgressMode::kAlways);
  CHECK_THROWS_AS(parse_progress_mode("sometimes"), UsageError);
}

TEST_CASE("advance from several threads counts every unit") {
  set_progress_mode(ProgressMode::kNever);
  Progress p("count", 4000, "items");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&p] {
      for (int i = 0; i < 1000; ++i) p.advance();
    });
  }
  for (auto& t : threads) t.join();
  CHECK(p.render(4000, 1.0, false).find("4000/4000") != std::string::npos);
}
