#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "byte_queue.h"

using namespace imgpipe;
using namespace std::chrono_literals;

TEST(OrderedByteQueue, PopsInSequenceWhateverThePushOrder) {
  OrderedByteQueue<int> q(1000);
  for (int seq : {2, 0, 3, 1}) ASSERT_TRUE(q.push(size_t(seq), seq * 10, 1));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(q.pop().value(), i * 10);
}

TEST(OrderedByteQueue, ProducerBlocksAtTheByteBudget) {
  OrderedByteQueue<int> q(100);
  ASSERT_TRUE(q.push(0, 0, 60));
  std::atomic<bool> pushed{false};
  std::thread producer([&] {
    q.push(1, 1, 60);  // 120 > 100 bytes: must wait for the consumer
    pushed = true;
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(pushed.load());
  EXPECT_EQ(q.bytes(), 60u);
  EXPECT_EQ(q.pop().value(), 0);
  producer.join();
  EXPECT_TRUE(pushed.load());
  EXPECT_EQ(q.peak_bytes(), 60u);
}

TEST(OrderedByteQueue, TheAwaitedItemIsAdmittedEvenWhenFull) {
  // Later items filled the budget; the one the consumer needs must still get in.
  OrderedByteQueue<int> q(100);
  ASSERT_TRUE(q.push(1, 1, 100));
  std::thread late([&] { q.push(0, 0, 50); });
  EXPECT_EQ(q.pop().value(), 0);
  EXPECT_EQ(q.pop().value(), 1);
  late.join();
}

TEST(OrderedByteQueue, StaysWithinBudgetUnderManyProducers) {
  constexpr size_t kItems = 2000, kBytes = 1000, kBudget = 10000;
  OrderedByteQueue<size_t> q(kBudget);
  std::atomic<size_t> next{0};
  std::vector<std::thread> producers;
  for (int t = 0; t < 4; ++t)
    producers.emplace_back([&] {
      for (size_t s; (s = next.fetch_add(1)) < kItems;) q.push(s, s, kBytes);
    });
  for (size_t i = 0; i < kItems; ++i) ASSERT_EQ(q.pop().value(), i);
  for (auto& p : producers) p.join();
  // Budget plus at most one over-budget "awaited" item.
  EXPECT_LE(q.peak_bytes(), kBudget + kBytes);
}

TEST(OrderedByteQueue, CloseWakesBlockedThreads) {
  OrderedByteQueue<int> q(10);
  ASSERT_TRUE(q.push(0, 0, 10));
  std::thread producer([&] { EXPECT_FALSE(q.push(1, 1, 10)); });
  std::this_thread::sleep_for(50ms);
  q.close();
  producer.join();
  EXPECT_FALSE(q.pop().has_value());
}

TEST(OrderedByteQueue, ReservationsCountBeforeTheItemExistsAndPushGivesThemBack) {
  OrderedByteQueue<int> q(100);
  ASSERT_TRUE(q.reserve(0, 70));  // item 0 is being decoded: 70 bytes held
  std::atomic<bool> reserved{false};
  std::thread decoder([&] {
    ASSERT_TRUE(q.reserve(1, 70));  // 140 > 100: waits, holding nothing
    reserved = true;
    ASSERT_TRUE(q.push(1, 1, 10, 70));
  });
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(reserved.load());
  EXPECT_EQ(q.bytes(), 70u);
  ASSERT_TRUE(q.push(0, 0, 20, 70));  // decoded down to a 20-byte tensor: 20 + 70 fit
  EXPECT_EQ(q.pop().value(), 0);
  EXPECT_EQ(q.pop().value(), 1);
  decoder.join();
  EXPECT_TRUE(reserved.load());
  EXPECT_EQ(q.bytes(), 0u);
  EXPECT_LE(q.peak_bytes(), 90u);  // at most 20 queued + 70 reserved, never 140
}
