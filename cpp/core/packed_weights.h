// packed_weights.h - frozen float32 linear weights kept in oneDNN's packed sgemm layout.
// dnnl_sgemm (cpu_gemm.h) copies its weight operand into its kernel's blocked layout on every
// call. oneDNN also exports a packed API (sgemm_pack_get_size / sgemm_pack / sgemm_compute, C++
// symbols of the same signature in oneDNN 2.6 and 3.7 as Debian ships them): the copy is made
// once. On ViT-S's products that ran 1.1-1.4x faster (bench/onednn-packed.py) and a ViT-S/14
// batch-1 inference 1.15-1.35x (docs/benchmarks.md). For M of 48 rows and more the results are
// bit-identical to dnnl_sgemm's; below, sgemm takes its matrix-vector path and the two differ in
// the last bits. The pack replaces the plain weight, so memory grows only by the pack's padding
// (a pack is 1.0-1.4x its weight), and the plain weight is rebuilt, bit for bit, before anything
// reads or writes it (a product with the identity, see PackedWeight::unpack).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <unordered_map>
#include <vector>

namespace inpformer {

// Whether oneDNN's packed sgemm was found next to libtorch, beside its dnnl_sgemm, and is not
// turned off (INP_FORMER_CPU_GEMM=sgemm keeps dnnl_sgemm unpacked, =libtorch uses neither).
bool packedProductsAvailable();

// One weight W [N, K] packed for y = x W^T (+ b).
class PackedWeight {
 public:
  // nullptr when W is small (under 65536 values), its values could not all be rebuilt exactly
  // from the pack (a non-finite or subnormal value) or oneDNN declines to pack it. The pack is
  // laid out for `threads` threads, and every product through it runs on that many.
  static std::unique_ptr<PackedWeight> pack(const torch::Tensor& weight, int threads);

  // rows [M, K] float32, contiguous: rows W^T + bias as addmm computes it (the bias first, the
  // product accumulated onto it, as cpu_gemm's linear does unpacked).
  torch::Tensor linear(const torch::Tensor& rows, const torch::Tensor& bias) const;

  // W again, bit for bit: the product of the identity with the pack gives every value exactly
  // (w * 1 plus exact zeros) except -0.0, which comes back +0.0 and is put back from the indices
  // kept at packing. Costs K products per value (0.15 s for a ViT-S, 2 threads).
  torch::Tensor unpack() const;

  int64_t bytes() const { return static_cast<int64_t>(buffer_.nbytes()); }

 private:
  PackedWeight() = default;
  void product(const float* x, int64_t m, float beta, float* out) const;
  torch::Tensor buffer_;         // the pack (float32 words, as oneDNN sizes it)
  int64_t n_ = 0, k_ = 0;
  int threads_ = 1;
  torch::Tensor negativeZeros_;  // flat indices of W's -0.0 values (int64), usually empty
};

// The linear weights of one network that may be packed: a cache of values that do not change
// while the packs live. A weight is packed at its first product under an ActivePackedWeights
// (so layers a model never runs are not), and its plain values are dropped then: the parameter
// keeps its identity but holds an empty tensor, which every other use would refuse loudly.
// unpackAll() puts them back before anything else reads or writes the weights.
class PackedLinearWeights {
 public:
  PackedLinearWeights(const std::vector<torch::Tensor>& weights, int threads);
  ~PackedLinearWeights();
  PackedLinearWeights(const PackedLinearWeights&) = delete;
  PackedLinearWeights& operator=(const PackedLinearWeights&) = delete;

  // rows W^T + bias through weight's pack, packing it first if it is one of these weights and
  // not packed yet; undefined when it is not one of them or cannot be packed (the caller then
  // computes it unpacked).
  torch::Tensor linear(const torch::Tensor& rows, const torch::Tensor& weight, const torch::Tensor& bias);

  // Every packed weight's plain values back in its parameter; the packs are dropped.
  void unpackAll();

  int64_t packedBytes() const;
  size_t packedCount() const;

 private:
  struct Entry {
    torch::Tensor weight;  // the parameter (same TensorImpl whatever its data)
    std::unique_ptr<PackedWeight> packed;
    bool refused = false;  // PackedWeight::pack declined: stays plain
  };
  std::unordered_map<const c10::TensorImpl*, Entry> entries_;
  int threads_;
};

// While one lives on a thread, float32 linear layers computed there (cpu_gemm.h's linear) go
// through these packed weights; nullptr leaves them unpacked.
class ActivePackedWeights {
 public:
  explicit ActivePackedWeights(PackedLinearWeights* weights);
  ~ActivePackedWeights();
  ActivePackedWeights(const ActivePackedWeights&) = delete;
  ActivePackedWeights& operator=(const ActivePackedWeights&) = delete;
  static PackedLinearWeights* current();

 private:
  PackedLinearWeights* previous_;
};

}  // namespace inpformer
