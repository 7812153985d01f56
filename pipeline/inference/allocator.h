#pragma once
// Allocation interface for weights, activation arenas and workspaces. It may refuse:
// the memory governor catches OutOfMemory, shrinks the batch and prepares again.
#include <cstddef>
#include <stdexcept>
#include <utility>

namespace imgpipe::infer {

/// Thrown when an allocation does not fit (budget cap, fault injection, or the system).
class OutOfMemory : public std::runtime_error {
 public:
  OutOfMemory(size_t requested, size_t available);
  size_t requested() const { return requested_; }  ///< bytes asked for
  size_t available() const { return available_; }  ///< bytes that were left
 private:
  size_t requested_, available_;
};

class Allocator {
 public:
  virtual ~Allocator();
  /// Returns memory for `bytes` bytes (64-byte aligned) or throws OutOfMemory.
  virtual void* allocate(size_t bytes) = 0;
  /// Releases memory from allocate(); `bytes` must be the size that was asked for.
  virtual void deallocate(void* p, size_t bytes) noexcept = 0;
};

/// Plain host memory, 64-byte aligned.
class HostAllocator : public Allocator {
 public:
  void* allocate(size_t bytes) override;
  void deallocate(void* p, size_t bytes) noexcept override;
};

/// Wraps another allocator with a byte cap and fault injection (for the governor and CI).
class BudgetedAllocator : public Allocator {
 public:
  explicit BudgetedAllocator(Allocator& inner, size_t budget = static_cast<size_t>(-1));
  void* allocate(size_t bytes) override;
  void deallocate(void* p, size_t bytes) noexcept override;

  /// Byte cap for the sum of live allocations; lowering it below used() refuses new ones.
  void set_budget(size_t bytes) { budget_ = bytes; }
  size_t budget() const { return budget_; }
  size_t used() const { return used_; }  ///< bytes live now
  size_t peak() const { return peak_; }  ///< most bytes live at once
  void reset_peak() { peak_ = used_; }
  /// Makes the nth future allocate() (1 = the next one) throw OutOfMemory; 0 disarms.
  void fail_allocation_at(int nth) { fail_countdown_ = nth; }

 private:
  Allocator& inner_;
  size_t budget_;
  size_t used_ = 0, peak_ = 0;
  int fail_countdown_ = 0;
};

/// Memory from an Allocator, returned to it when destroyed (move-only).
class Buffer {
 public:
  Buffer() = default;
  Buffer(Allocator& a, size_t bytes) : alloc_(&a), bytes_(bytes) {
    if (bytes) p_ = a.allocate(bytes);
  }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      reset();
      std::swap(alloc_, o.alloc_);
      std::swap(p_, o.p_);
      std::swap(bytes_, o.bytes_);
    }
    return *this;
  }
  ~Buffer() { reset(); }
  void reset() noexcept {
    if (p_) alloc_->deallocate(p_, bytes_);
    p_ = nullptr;
    bytes_ = 0;
  }
  char* data() const { return static_cast<char*>(p_); }

 private:
  Allocator* alloc_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace imgpipe::infer
