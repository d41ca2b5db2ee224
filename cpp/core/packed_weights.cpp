// packed_weights.cpp - oneDNN's packed sgemm, looked up next to libtorch as dnnl_sgemm is.
#include "packed_weights.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <ATen/record_function.h>

#include "cpu_gemm.h"
#include "tensor_memory.h"

namespace inpformer {
namespace {

// dnnl::impl::cpu's packed GEMM (src/cpu/gemm/gemm_pack.hpp): column-major, dim_t = int64_t,
// dnnl_status_t returned as int (0: success).
using PackSizeFn = int (*)(const char* identifier, const char* transa, const char* transb, const int64_t* M,
                           const int64_t* N, const int64_t* K, const int64_t* lda, const int64_t* ldb, size_t* size,
                           bool* pack);
using PackFn = int (*)(const char* identifier, const char* transa, const char* transb, const int64_t* M,
                       const int64_t* N, const int64_t* K, const int64_t* lda, const int64_t* ldb, const float* src,
                       float* dst);
using ComputeFn = int (*)(const char* transa, const char* transb, const int64_t* M, const int64_t* N, const int64_t* K,
                          const float* A, const int64_t* lda, const float* B, const int64_t* ldb, const float* beta,
                          float* C, const int64_t* ldc);

struct PackedApi {
  PackSizeFn size = nullptr;
  PackFn pack = nullptr;
  ComputeFn compute = nullptr;
};

const PackedApi& packedApi() {
  static const PackedApi api = [] {
    PackedApi a;
    const char* choice = std::getenv("INP_FORMER_CPU_GEMM");
    if (!inferenceAvoidsBlas() || (choice != nullptr && std::strcmp(choice, "sgemm") == 0)) return a;
    a.size = reinterpret_cast<PackSizeFn>(symbolNearTorch("_ZN4dnnl4impl3cpu19sgemm_pack_get_sizeEPKcS3_S3_PKlS5_S5_S5_S5_PmPb"));
    a.pack = reinterpret_cast<PackFn>(symbolNearTorch("_ZN4dnnl4impl3cpu10sgemm_packEPKcS3_S3_PKlS5_S5_S5_S5_PKfPf"));
    a.compute = reinterpret_cast<ComputeFn>(symbolNearTorch("_ZN4dnnl4impl3cpu13sgemm_computeEPKcS3_PKlS5_S5_PKfS5_S7_S5_S7_PfS5_"));
    if (a.size == nullptr || a.pack == nullptr || a.compute == nullptr) a = {};
    return a;
  }();
  return api;
}

void check(int status, const char* what) {
  TORCH_CHECK(status == 0, "oneDNN ", what, " failed with status ", status);
}

// The weight, W [N, K] row-major, is oneDNN's A: column-major K x N read transposed, so that
// C = op(A) B in column-major is out^T [N, M] = W x^T, i.e. out [M, N] = x W^T row-major.
// The pack is sized for many rows: oneDNN lays a pack out for the product it is told of, and for
// a few rows (6 crashed sgemm_pack_get_size in oneDNN 2.6) or a few hundred it pads some weights
// by a third; one pack serves any M at the call.
constexpr int64_t kPackRows = 8192;

// Weights smaller than this stay plain: their products are small (a model this narrow runs
// each inference on one thread, see model.cpp) and repacking them per call costs little.
constexpr int64_t kSmallestPacked = int64_t{1} << 16;

// unpack() rebuilds a value as w * 1 plus exact zeros: exact for every finite normal value and
// +0.0, not for infinities (inf * 0) or NaNs, nor subnormals under a flush-to-zero mode; -0.0
// comes back +0.0, so where they are is kept. One pass over W's bits (a ViT-B's weights took
// over a second in tensor ops that each made a temporary of the weight's size).
bool exactlyRebuildable(const torch::Tensor& w, std::vector<int64_t>& negativeZeros) {
  const auto* values = w.data_ptr<float>();
  for (int64_t i = 0, n = w.numel(); i < n; ++i) {
    uint32_t bits = 0;
    std::memcpy(&bits, values + i, sizeof bits);
    const uint32_t exponent = bits & 0x7F800000U;
    if (exponent == 0x7F800000U) return false;                        // infinity or NaN
    if (exponent == 0 && (bits & 0x007FFFFFU) != 0) return false;     // subnormal
    if (bits == 0x80000000U) negativeZeros.push_back(i);
  }
  return true;
}

}  // namespace

// out [M, N] = x W^T + beta * out through the pack, on exactly the threads it was laid out for:
// oneDNN's driver takes a pack's thread partition as given but sizes its per-thread state by the
// threads available at the call, so fewer threads read past that state and leave parts of the
// product undone (seen: wrong results and a hang with a 2-thread pack computed on 1 thread).
void PackedWeight::product(const float* x, int64_t m, float beta, float* out) const {
  int64_t n = n_, k = k_;
  OpenMpThreadCount partition(threads_);
  check(packedApi().compute("P", "N", &n, &m, &k, buffer_.data_ptr<float>(), &k, x, &k, &beta, out, &n), "sgemm_compute");
}

bool packedProductsAvailable() { return packedApi().compute != nullptr; }

std::unique_ptr<PackedWeight> PackedWeight::pack(const torch::Tensor& weight, int threads) {
  const auto& api = packedApi();
  if (api.compute == nullptr || weight.dim() != 2 || !weight.device().is_cpu() || weight.scalar_type() != torch::kFloat ||
      weight.numel() < kSmallestPacked || threads < 1) {
    return nullptr;
  }
  auto w = weight.detach().contiguous();
  std::vector<int64_t> negativeZeros;
  if (!exactlyRebuildable(w, negativeZeros)) return nullptr;
  std::unique_ptr<PackedWeight> p(new PackedWeight());
  p->n_ = w.size(0);
  p->k_ = w.size(1);
  p->threads_ = threads;
  OpenMpThreadCount partition(threads);  // the pack's layout is made for this many threads
  size_t bytes = 0;
  bool packs = false;
  check(api.size("A", "T", "N", &p->n_, &kPackRows, &p->k_, &p->k_, &p->k_, &bytes, &packs), "sgemm_pack_get_size");
  if (!packs || bytes == 0) return nullptr;
  p->buffer_ = torch::empty({static_cast<int64_t>((bytes + sizeof(float) - 1) / sizeof(float))}, torch::kFloat);
  check(api.pack("A", "T", "N", &p->n_, &kPackRows, &p->k_, &p->k_, &p->k_, w.data_ptr<float>(), p->buffer_.data_ptr<float>()),
        "sgemm_pack");
  p->negativeZeros_ = torch::tensor(negativeZeros, torch::kLong);
  return p;
}

torch::Tensor PackedWeight::linear(const torch::Tensor& rows, const torch::Tensor& bias) const {
  RECORD_FUNCTION("oneDNN packed sgemm (linear)", std::vector<c10::IValue>());  // named in bench/profile.js's table
  TORCH_CHECK(rows.dim() == 2 && rows.size(1) == k_ && rows.scalar_type() == torch::kFloat && rows.is_contiguous(),
              "a packed product takes contiguous float32 rows of ", k_, " values, got ", rows.sizes());
  const auto m = rows.size(0);
  torch::Tensor out = bias.defined() ? bias.reshape({1, n_}).expand({m, n_}).contiguous() : torch::empty({m, n_}, rows.options());
  if (m > 0) product(rows.data_ptr<float>(), m, bias.defined() ? 1.0F : 0.0F, out.data_ptr<float>());
  return out;
}

torch::Tensor PackedWeight::unpack() const {
  auto identity = torch::eye(k_, torch::kFloat);
  auto transposed = torch::empty({k_, n_}, torch::kFloat);  // W^T [K, N] = I W^T
  product(identity.data_ptr<float>(), k_, 0.0F, transposed.data_ptr<float>());
  auto w = transposed.t().contiguous();
  if (negativeZeros_.numel() > 0) w.view(-1).index_fill_(0, negativeZeros_, -0.0);
  return w;
}

PackedLinearWeights::PackedLinearWeights(const std::vector<torch::Tensor>& weights, int threads) : threads_(threads) {
  for (const auto& w : weights) entries_[w.unsafeGetTensorImpl()].weight = w;
}

PackedLinearWeights::~PackedLinearWeights() = default;

torch::Tensor PackedLinearWeights::linear(const torch::Tensor& rows, const torch::Tensor& weight, const torch::Tensor& bias) {
  auto found = entries_.find(weight.unsafeGetTensorImpl());
  if (found == entries_.end() || found->second.refused) return {};
  auto& entry = found->second;
  if (!entry.packed) {
    entry.packed = PackedWeight::pack(entry.weight, threads_);
    if (!entry.packed) {
      entry.refused = true;
      return {};
    }
    // the plain values go: an empty tensor in their place (same parameter), its memory back to
    // the system rather than to the tensor cache, since it will not be asked for again
    c10::InferenceMode normalTensors(false);
    torch::NoGradGuard noGrad;
    TensorCacheBypass bypass;
    entry.weight.set_data(torch::empty({0}, entry.weight.options()));
  }
  return entry.packed->linear(rows, bias);
}

void PackedLinearWeights::unpackAll() {
  c10::InferenceMode normalTensors(false);  // weights that training may then record
  torch::NoGradGuard noGrad;
  TensorCacheBypass bypass;  // the packs' memory
  for (auto& kv : entries_) {
    auto& entry = kv.second;
    if (!entry.packed) continue;
    entry.weight.set_data(entry.packed->unpack());
    entry.packed.reset();
  }
}

int64_t PackedLinearWeights::packedBytes() const {
  int64_t total = 0;
  for (const auto& kv : entries_)
    if (kv.second.packed) total += kv.second.packed->bytes();
  return total;
}

size_t PackedLinearWeights::packedCount() const {
  size_t count = 0;
  for (const auto& kv : entries_) count += kv.second.packed ? 1 : 0;
  return count;
}

namespace {
PackedLinearWeights*& activePacked() {
  thread_local PackedLinearWeights* current = nullptr;
  return current;
}
}  // namespace

ActivePackedWeights::ActivePackedWeights(PackedLinearWeights* weights) : previous_(activePacked()) {
  activePacked() = weights;
}
ActivePackedWeights::~ActivePackedWeights() { activePacked() = previous_; }
PackedLinearWeights* ActivePackedWeights::current() { return activePacked(); }

}  // namespace inpformer
