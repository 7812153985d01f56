#pragma once
// The queue between the decode threads and the batcher: bounded by bytes, not by count,
// and ordered: the consumer takes items strictly by sequence number.
#include <condition_variable>
#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

namespace imgpipe {

template <class T>
class OrderedByteQueue {
 public:
  explicit OrderedByteQueue(size_t budget_bytes) : budget_(budget_bytes) {}

  /// Blocks while the item does not fit in the byte budget, unless it is the very item the
  /// consumer waits for (that one is always admitted, so out-of-order producers cannot
  /// deadlock). Returns false, dropping the item, once the queue is closed.
  /// `reserved`: bytes counted for this item by reserve() before it existed, given back now.
  bool push(size_t seq, T item, size_t bytes, size_t reserved = 0) {
    std::unique_lock<std::mutex> lock(mu_);
    bytes_ -= reserved;
    if (reserved) space_.notify_all();
    if (!wait_for_space(lock, seq, bytes)) return false;
    items_.emplace(seq, std::make_pair(std::move(item), bytes));
    if (seq == next_) ready_.notify_one();
    return true;
  }

  /// Counts `bytes` for item `seq` before it is made (an image about to be decoded), so that
  /// what the producers hold while working stays inside the budget too. Blocks as push()
  /// does; the item's push() gives the reservation back. False once the queue is closed.
  bool reserve(size_t seq, size_t bytes) {
    std::unique_lock<std::mutex> lock(mu_);
    return wait_for_space(lock, seq, bytes);
  }

  /// Blocks until the next item in sequence arrives; nullopt once closed.
  std::optional<T> pop() {
    std::unique_lock<std::mutex> lock(mu_);
    ready_.wait(lock, [&] { return closed_ || items_.count(next_) != 0; });
    if (closed_) return std::nullopt;
    auto it = items_.find(next_);
    T item = std::move(it->second.first);
    bytes_ -= it->second.second;
    items_.erase(it);
    ++next_;
    space_.notify_all();  // frees bytes, and a new item is now "next"
    return item;
  }

  /// Wakes every waiter; later pushes and pops fail.
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    ready_.notify_all();
    space_.notify_all();
  }

  size_t bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bytes_;
  }
  size_t peak_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }

 private:
  bool wait_for_space(std::unique_lock<std::mutex>& lock, size_t seq, size_t bytes) {
    space_.wait(lock, [&] { return closed_ || seq == next_ || bytes_ + bytes <= budget_; });
    if (closed_) return false;
    bytes_ += bytes;
    if (bytes_ > peak_) peak_ = bytes_;
    return true;
  }

  mutable std::mutex mu_;
  std::condition_variable ready_, space_;
  std::map<size_t, std::pair<T, size_t>> items_;
  size_t budget_, bytes_ = 0, peak_ = 0, next_ = 0;
  bool closed_ = false;
};

}  // namespace imgpipe
