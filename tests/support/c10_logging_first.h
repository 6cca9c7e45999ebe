// Force-included first into every test (tests/CMakeLists.txt): LibTorch's c10/util/Logging.h
// defines a glog-style CHECK that aborts the process without a report. Included before doctest, it
// is overridden by doctest's CHECK, whatever order a test file includes torch and doctest in.
#pragma once
#if defined(__has_include)
#if __has_include(<c10/util/Logging.h>)
#include <c10/util/Logging.h>
#endif
#endif
