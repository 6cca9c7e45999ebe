// The optimizer state pieces' arithmetic (state_pieces.h) against hand-worked layouts: the piece
// size rule, a unit's pieces and where each piece meets the unit's tensors.
#include "fuyou/offload/state_pieces.h"

#include <doctest/doctest.h>

#include "common/error.h"

using namespace sparsetrain::fuyou;

TEST_CASE("the piece size is a multiple of 1024 floats whose 12-byte pieces fill whole extents") {
  // 4 MiB extents: 12·P ≡ 0 (mod 4 MiB) <=> P ≡ 0 (mod 1 Mi floats); the default 2^24 is one.
  CHECK(state_piece_floats(4 << 20) == std::int64_t{1} << 24);
  CHECK(state_piece_floats(4 << 20, (std::int64_t{1} << 24) + 5) == std::int64_t{1} << 24);
  CHECK(state_piece_floats(4 << 20, 3 << 20) == 3 << 20);
  CHECK(state_piece_floats(4 << 20, 1) == 1 << 20);  // at least one step
  // 4096-byte extents: step lcm(4096 / 4, 1024) = 1024 floats.
  CHECK(state_piece_floats(4096, 5000) == 4096);
  // 12,288-byte extents (3 · 4096): step lcm(12,288 / 12, 1024) = 1024; 12 · 1024 = 12,288.
  CHECK(state_piece_floats(12288, 2048) == 2048);
  // 20,480-byte extents (5 · 4096): step lcm(20,480 / 4, 1024) = 5120 floats (12 · 5120 = 3 ·
  // 20,480).
  CHECK(state_piece_floats(20480, 12000) == 10240);
  CHECK_THROWS_AS(state_piece_floats(1000), sparsetrain::common::UsageError);
  CHECK_THROWS_AS(state_piece_floats(0), sparsetrain::common::UsageError);
}

TEST_CASE("a unit's pieces cover its padded floats in order, the last one shorter") {
  const auto pieces = unit_pieces(50176, 16384);  // a block of the tests' C = 64 model
  REQUIRE(pieces.size() == 4);
  CHECK(pieces[0].first == 0);
  CHECK(pieces[3].index == 3);
  CHECK(pieces[3].first == 49152);
  CHECK(pieces[3].floats == 1024);
  CHECK(pieces[2].byte_offset(16384) == 2 * 12 * 16384);
  const auto whole = unit_pieces(50176, 1 << 24);
  REQUIRE(whole.size() == 1);
  CHECK(whole[0].floats == 50176);
  CHECK(unit_pieces(0, 1024).empty());
}

TEST_CASE("a piece's spans split the tensors it crosses, skip the others and the padding") {
  // Tensors of 3, 5 and 2 floats in a unit padded to 1024, pieces of 4 (hand-worked; the
  // arithmetic does not need the 1024 rule).
  const std::vector<std::int64_t> numels = {3, 5, 2};
  const auto spans = piece_spans(numels, StatePiece{1, 4, 4});  // floats [4, 8)
  REQUIRE(spans.size() == 1);
  CHECK(spans[0].tensor == 1);
  CHECK(spans[0].tensor_offset == 1);
  CHECK(spans[0].piece_offset == 0);
  CHECK(spans[0].floats == 4);

  const auto first = piece_spans(numels, StatePiece{0, 0, 4});  // [0, 4): tensor 0, then 1's first
  REQUIRE(first.size() == 2);
  CHECK(first[0].tensor == 0);
  CHECK(first[0].floats == 3);
  CHECK(first[1].tensor == 1);
  CHECK(first[1].tensor_offset == 0);
  CHECK(first[1].piece_offset == 3);
  CHECK(first[1].floats == 1);

  const auto last = piece_spans(numels, StatePiece{2, 8, 1016});  // tensor 2, then padding
  REQUIRE(last.size() == 1);
  CHECK(last[0].tensor == 2);
  CHECK(last[0].floats == 2);

  CHECK(piece_spans(numels, StatePiece{3, 12, 4}).empty());  // padding only
}
