// tensor_memory.cpp - a c10 CPU allocator that keeps freed large blocks for reuse.
#include "tensor_memory.h"

#include <sys/mman.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <c10/core/CPUAllocator.h>
#include <torch/torch.h>
#include <torch/version.h>

namespace inpformer {
namespace {

constexpr size_t kLargeBlock = size_t{1} << 20;  // smaller blocks stay with libtorch's allocator
constexpr size_t kGranule = size_t{64} << 10;     // large sizes rounded up to 64 KiB
// A cached block serves requests down to 2/3 of its length (slack at most half the request):
// ViT-S/224 b8 kept 193 MiB cached with 1/8, 150 with 1/2 at the same speed (14.7 img/s), 136
// with 1/1 but a higher process peak and 13.0-13.8 img/s. Far larger blocks stay for requests
// their size.
constexpr size_t kMaxSlackDivisor = 2;
// The cache never holds more than this; past it, blocks are unmapped at free as glibc would.
constexpr size_t kCacheLimit = size_t{2} << 30;
// A block not reused for this long goes back to the system at the next allocation or free: a
// call's blocks come back within a call's time, while sizes that stop recurring (other image
// sizes, other models, results JS collected late) do not pile up. Without it a stream of 500
// predictions grew RSS by 138 MiB (test/predict.test.js, CI).
constexpr auto kIdle = std::chrono::seconds(2);
using Clock = std::chrono::steady_clock;

struct FreeBlock {
  void* data;
  Clock::time_point freedAt;
};

struct Cache {
  std::mutex mutex;
  std::unordered_map<void*, size_t> live;   // mapped blocks in use, by data pointer: their length
  std::multimap<size_t, FreeBlock> free;    // freed blocks by length
  Clock::time_point lastSweep;
  size_t freeBytes = 0;
  c10::DeleterFnPtr smallDeleter = nullptr;  // libtorch's own raw deleter, for the blocks it made
};
Cache& cache() {
  static auto* c = new Cache();  // never destroyed: tensors may be freed during exit
  return *c;
}

// Takes the blocks idle past kIdle out of the cache (at most every 100 ms); the caller unmaps
// them after dropping the lock.
std::vector<std::pair<void*, size_t>> takeIdle(Cache& c, Clock::time_point now) {
  std::vector<std::pair<void*, size_t>> idle;
  if (now - c.lastSweep < std::chrono::milliseconds(100)) return idle;
  c.lastSweep = now;
  for (auto it = c.free.begin(); it != c.free.end();) {
    if (now - it->second.freedAt >= kIdle) {
      idle.emplace_back(it->second.data, it->first);
      c.freeBytes -= it->first;
      it = c.free.erase(it);
    } else {
      ++it;
    }
  }
  return idle;
}

void unmapAll(const std::vector<std::pair<void*, size_t>>& blocks) {
  for (const auto& [data, length] : blocks) munmap(data, length);
}

void freeBlock(void* data) {
  auto& c = cache();
  std::unique_lock<std::mutex> lock(c.mutex);
  auto it = c.live.find(data);
  if (it == c.live.end()) {
    lock.unlock();
    // raw_deallocate sends libtorch's own small blocks here too
    if (c.smallDeleter != nullptr) c.smallDeleter(data);
    return;
  }
  const size_t length = it->second;
  c.live.erase(it);
  const auto now = Clock::now();
  auto idle = takeIdle(c, now);
  if (TensorCacheBypass::active() || c.freeBytes + length > kCacheLimit) {
    idle.emplace_back(data, length);
  } else {
    c.free.emplace(length, FreeBlock{data, now});
    c.freeBytes += length;
  }
  lock.unlock();
  unmapAll(idle);
}

class CachingAllocator final : public c10::Allocator {
 public:
  explicit CachingAllocator(c10::Allocator* small) : small_(small) { cache().smallDeleter = small->raw_deleter(); }

#if TORCH_VERSION_MAJOR >= 2
  c10::DataPtr allocate(size_t n) override { return allocateBlock(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
#else
  c10::DataPtr allocate(size_t n) const override { return allocateBlock(n); }
#endif
  // oneDNN's scratch memory goes through raw_allocate / raw_deallocate, which need one deleter
  // for every block: ours hands the blocks it did not map to libtorch's
  c10::DeleterFnPtr raw_deleter() const override { return small_->raw_deleter() != nullptr ? &freeBlock : nullptr; }

 private:
  c10::DataPtr allocateBlock(size_t n) const {
    if (n < kLargeBlock) return small_->allocate(n);
    const size_t length = (n + kGranule - 1) / kGranule * kGranule;
    auto& c = cache();
    void* data = nullptr;
    std::vector<std::pair<void*, size_t>> unmap;  // idle blocks, and on a miss the evicted ones
    {
      std::lock_guard<std::mutex> lock(c.mutex);
      unmap = takeIdle(c, Clock::now());
      auto it = c.free.lower_bound(length);
      if (it != c.free.end() && it->first - length <= length / kMaxSlackDivisor) {
        data = it->second.data;
        c.live[data] = it->first;
        c.freeBytes -= it->first;
        c.free.erase(it);
      } else {
        // a miss maps fresh memory: first unmap as much of the cache in blocks too small for this
        // request, so the cache and the calls' live blocks together stay near the calls' peak
        size_t freed = 0;
        while (freed < length && it != c.free.begin()) {
          --it;
          freed += it->first;
          unmap.emplace_back(it->second.data, it->first);
          it = c.free.erase(it);
        }
        c.freeBytes -= freed;
      }
    }
    unmapAll(unmap);
    if (data == nullptr) {
      data = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (data == MAP_FAILED) {
        releaseCachedTensorBlocks();  // make room, then let libtorch's allocator try (and report)
        return small_->allocate(n);
      }
      std::lock_guard<std::mutex> lock(c.mutex);
      c.live[data] = length;
    }
    return {data, data, &freeBlock, c10::Device(c10::DeviceType::CPU)};
  }

  c10::Allocator* small_;
};

}  // namespace

bool cacheLargeTensorBlocks() {
  static const bool installed = [] {
    const char* choice = std::getenv("INP_FORMER_TENSOR_CACHE");
    if (choice != nullptr && std::strcmp(choice, "0") == 0) return false;
    static CachingAllocator allocator(c10::GetDefaultCPUAllocator());
    // priority above the default's 0, so a later default registration does not replace it
    c10::SetCPUAllocator(&allocator, /*priority=*/1);
    return true;
  }();
  return installed;
}

size_t cachedTensorBytes() {
  auto& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.freeBytes;
}

void releaseCachedTensorBlocks() {
  std::vector<std::pair<void*, size_t>> blocks;
  {
    auto& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    for (const auto& [length, block] : c.free) blocks.emplace_back(block.data, length);
    c.free.clear();
    c.freeBytes = 0;
  }
  unmapAll(blocks);
}

}  // namespace inpformer
