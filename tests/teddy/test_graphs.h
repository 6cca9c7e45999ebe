// Small hand-made graphs shared by the teddy tests, with their edge ids spelled out.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "teddy/graph/graph.h"

namespace sparsetrain::test {

using teddy::Edge;
using teddy::Graph;

inline Graph make_graph(std::uint32_t n, std::vector<Edge> edges) {
  teddy::BuildOptions o;
  o.source = "test";
  return teddy::build_graph(n, std::move(edges), o);
}

// 0 - 1 - 2 - 3: e0 = {0,1}, e1 = {1,2}, e2 = {2,3}
inline Graph path4() { return make_graph(4, {{0, 1}, {1, 2}, {2, 3}}); }
// centre 0, leaves 1..4: e_i = {0, i+1}
inline Graph star5() { return make_graph(5, {{0, 1}, {0, 2}, {0, 3}, {0, 4}}); }
// triangle 0,1,2 with pendant 3 on 2: e0 = {0,1}, e1 = {0,2}, e2 = {1,2}, e3 = {2,3}
inline Graph triangle_pendant() { return make_graph(4, {{0, 1}, {0, 2}, {1, 2}, {2, 3}}); }
// self loop on 0, path 0 - 1 - 2, node 3 isolated: e0 = {0,0}, e1 = {0,1}, e2 = {1,2}
inline Graph loop_isolated() { return make_graph(4, {{0, 0}, {0, 1}, {1, 2}}); }

// A fresh directory under /tmp, removed by the destructor.
struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() /
           ("st-teddy-" + tag + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

}  // namespace sparsetrain::test
