// scoped_flag.h - a per-thread switch, on for the lifetime of a scope: the guards that change how
// the work done inside them on that thread runs (cpu_gemm.h's products, tensor_memory.h's cache
// bypass). Header-only: no libtorch.
#pragma once

namespace inpformer {

// Sets this thread's flag of Tag for its lifetime and restores the previous value after, so
// scopes nest. Each Tag is a flag of its own.
template <typename Tag>
class ScopedThreadFlag {
 public:
  explicit ScopedThreadFlag(bool on = true) : previous_(flag()) { flag() = on; }
  ~ScopedThreadFlag() { flag() = previous_; }
  ScopedThreadFlag(const ScopedThreadFlag&) = delete;
  ScopedThreadFlag& operator=(const ScopedThreadFlag&) = delete;

  // Whether the innermost scope of this thread set the flag.
  static bool active() { return flag(); }

 private:
  static bool& flag() {
    thread_local bool value = false;
    return value;
  }
  bool previous_;
};

}  // namespace inpformer
