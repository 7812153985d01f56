#pragma once
// The GPU suites' guard: skip with the reason when no usable GPU, fail under
// IMGPIPE_REQUIRE_GPU=1.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "device_query.h"

/// In GPU suites: skip with the reason when no usable GPU, fail instead under
/// IMGPIPE_REQUIRE_GPU=1.
#define IMGPIPE_REQUIRE_GPU_OR_SKIP()                                                        \
  do {                                                                                       \
    const auto probe_ = ::imgpipe::kernels::probe_cuda();                                    \
    if (probe_.device_count == 0) {                                                          \
      const char* req_ = std::getenv("IMGPIPE_REQUIRE_GPU");                                 \
      if (req_ && std::string(req_) == "1") FAIL() << "IMGPIPE_REQUIRE_GPU=1: " << probe_.reason; \
      GTEST_SKIP() << "no usable GPU: " << probe_.reason;                                     \
    }                                                                                        \
  } while (0)
