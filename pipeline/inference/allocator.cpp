#include "allocator.h"

#include <cstdlib>
#include <new>
#include <string>

namespace imgpipe::infer {

OutOfMemory::OutOfMemory(size_t requested, size_t available)
    : std::runtime_error("out of memory: requested " + std::to_string(requested) +
                         " bytes, " + std::to_string(available) + " bytes available"),
      requested_(requested), available_(available) {}

Allocator::~Allocator() = default;

void* HostAllocator::allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  if (!p) throw OutOfMemory(bytes, 0);
  return p;
}

void HostAllocator::deallocate(void* p, size_t) noexcept { std::free(p); }

BudgetedAllocator::BudgetedAllocator(Allocator& inner, size_t budget)
    : inner_(inner), budget_(budget) {}

void* BudgetedAllocator::allocate(size_t bytes) {
  const size_t available = used_ <= budget_ ? budget_ - used_ : 0;
  if (fail_countdown_ > 0 && --fail_countdown_ == 0) throw OutOfMemory(bytes, available);
  if (bytes > available) throw OutOfMemory(bytes, available);
  void* p = inner_.allocate(bytes);
  used_ += bytes;
  if (used_ > peak_) peak_ = used_;
  return p;
}

void BudgetedAllocator::deallocate(void* p, size_t bytes) noexcept {
  if (!p) return;
  inner_.deallocate(p, bytes);
  used_ -= bytes;
}

}  // namespace imgpipe::infer
