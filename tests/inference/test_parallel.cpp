// parallel_for: every item exactly once, whatever the size, nesting or calling thread.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "parallel.h"

namespace imgpipe::infer {
namespace {

TEST(ParallelFor, CoversEveryItemOnceForAnySizeAndGrain) {
  for (const int64_t n : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{7}, int64_t{1000}, int64_t{100003}}) {
    for (const int64_t grain : {int64_t{1}, int64_t{3}, int64_t{64}, int64_t{1} << 20}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (int rep = 0; rep < 20; ++rep)
        parallel_for(n, grain, [&](int64_t b, int64_t e) {
          ASSERT_LE(0, b);
          ASSERT_LE(b, e);
          ASSERT_LE(e, n);
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 20) << "n " << n << " grain " << grain << " item " << i;
    }
  }
  EXPECT_GE(parallel_threads(), 1);
}

TEST(ParallelFor, NestedAndConcurrentCallsRunEveryItem) {
  std::atomic<int64_t> sum{0};
  auto job = [&] {
    for (int rep = 0; rep < 200; ++rep)
      parallel_for(64, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          parallel_for(10, 1, [&](int64_t b2, int64_t e2) { sum.fetch_add(e2 - b2); });  // inline
      });
  };
  std::thread other(job);
  job();
  other.join();
  EXPECT_EQ(sum.load(), 2 * 200 * 64 * 10);
}

}  // namespace
}  // namespace imgpipe::infer
