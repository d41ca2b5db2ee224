// cpu_gemm.cpp - oneDNN's sgemm, looked up in the libraries libtorch loaded.
#include "cpu_gemm.h"

#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <strings.h>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include "activations.h"
#include "packed_weights.h"

namespace inpformer {
namespace {

// oneDNN's C API, the same in its 2.x and 3.x releases: row-major C = alpha op(A) op(B) + beta C.
using Sgemm = int (*)(char transA, char transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                      int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
struct DnnlVersion {
  int major, minor, patch;
  const char* hash;
};
using VersionFn = const DnnlVersion* (*)();
// The same for bfloat16 operands (oneDNN's bfloat16 words), C float32: gemm_bf16bf16f32.
using GemmBf16 = int (*)(char transA, char transB, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                         int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);

using SetThreads = void (*)(int);
using GetThreads = int (*)();

struct OneDnn {
  Sgemm sgemm = nullptr;
  GemmBf16 gemmBf16 = nullptr;  // only where the CPU's bfloat16 products are fast
  std::string name = "libtorch";
};

const OneDnn& oneDnn() {
  static const OneDnn found = [] {
    OneDnn d;
    const char* choice = std::getenv("INP_FORMER_CPU_GEMM");
    if (choice != nullptr && std::strcmp(choice, "libtorch") == 0) return d;  // "sgemm": see packed_weights.cpp
    d.sgemm = reinterpret_cast<Sgemm>(symbolNearTorch("dnnl_sgemm"));
    if (d.sgemm == nullptr) return d;
    if (cpuBf16ProductsFast()) d.gemmBf16 = reinterpret_cast<GemmBf16>(symbolNearTorch("dnnl_gemm_bf16bf16f32"));
    if (d.gemmBf16 != nullptr) {
      // 1 x 1: a oneDNN without a kernel for this CPU answers "unimplemented"; libtorch's bfloat16
      // products then stay
      const uint16_t one = 0x3f80;  // 1.0 in bfloat16
      float c = 0.0F;
      if (d.gemmBf16('N', 'N', 1, 1, 1, 1.0F, &one, 1, &one, 1, 0.0F, &c, 1) != 0 || c != 1.0F) d.gemmBf16 = nullptr;
    }
    d.name = "oneDNN";
    if (auto version = reinterpret_cast<VersionFn>(symbolNearTorch("dnnl_version"))) {
      const auto* v = version();
      d.name += " " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
    }
    return d;
  }();
  return found;
}

// libgomp's per-thread count, which libtorch's parallel ops and oneDNN's products read
// (omp_get_max_threads). None with a libtorch built without OpenMP.
struct OpenMp {
  SetThreads setThreads = nullptr;
  GetThreads maxThreads = nullptr;
};

const OpenMp& openMp() {
  static const OpenMp found = [] {
    OpenMp o;
    o.setThreads = reinterpret_cast<SetThreads>(symbolNearTorch("omp_set_num_threads"));
    o.maxThreads = reinterpret_cast<GetThreads>(symbolNearTorch("omp_get_max_threads"));
    if (o.setThreads == nullptr || o.maxThreads == nullptr) o = {};
    return o;
  }();
  return found;
}

bool eligible(std::initializer_list<const torch::Tensor*> tensors, bool allowGrad = false) {
  if (oneDnn().sgemm == nullptr) return false;
  const bool recording = torch::GradMode::is_enabled();
  for (const auto* t : tensors) {
    if (!t->defined()) continue;
    if (!t->device().is_cpu() || t->scalar_type() != torch::kFloat || t->is_sparse() || t->is_mkldnn()) return false;
    if (recording && t->requires_grad() && !allowGrad) return false;
  }
  return true;
}

// Under BFloat16Products, a float32 operand is rounded to bfloat16 for the product; autograd
// records the rounding, so gradients reach the float32 weights as float32.
bool inBFloat16(const torch::Tensor& t) { return BFloat16Products::active() && t.scalar_type() == torch::kFloat; }
torch::Tensor toBFloat16(const torch::Tensor& t) { return t.defined() ? t.to(torch::kBFloat16) : t; }

// Whether oneDNN's gemm_bf16bf16f32 can take these operands: dense CPU float32 or bfloat16
// tensors (rounded to bfloat16 for it), where that product was found.
bool eligibleInBFloat16(std::initializer_list<const torch::Tensor*> tensors) {
  if (oneDnn().gemmBf16 == nullptr) return false;
  for (const auto* t : tensors) {
    if (!t->defined()) continue;
    const auto type = t->scalar_type();
    if (!t->device().is_cpu() || (type != torch::kFloat && type != torch::kBFloat16) || t->is_sparse() || t->is_mkldnn())
      return false;
  }
  return true;
}

// A matrix's layout for sgemm: 'N' with rows `ld` apart, or 'T' (stored transposed), or none.
struct Layout {
  char trans;
  int64_t ld;
};
bool layoutOf(int64_t rows, int64_t cols, int64_t rowStride, int64_t colStride, Layout& out) {
  if (colStride == 1 && rowStride >= std::max<int64_t>(cols, 1)) {
    out = {'N', rowStride};
    return true;
  }
  if (rowStride == 1 && colStride >= std::max<int64_t>(rows, 1)) {
    out = {'T', colStride};
    return true;
  }
  return false;
}

void check(int status) {
  TORCH_CHECK(status == 0, "oneDNN's product failed with status ", status);
}

// Below this many multiply-adds a product runs on one thread: waking libtorch's sleeping OpenMP
// workers (passive waiting) costs more than it saves, as OpenBLAS also decides for small
// products. A tiny 64-wide model's predict took 10.5 ms with every product on 2 threads against
// 7.2 on OpenBLAS (bench/fairness.js).
constexpr int64_t kSmallProduct = int64_t{1} << 22;

// One product on oneDNN, on one thread when it is small: sgemm on float32 operands,
// gemm_bf16bf16f32 on bfloat16 ones (`type`); C is float32 either way.
int gemmCall(torch::ScalarType type, char transA, char transB, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
             const void* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  OpenMpThreadCap small(M * N * K < kSmallProduct ? 1 : 0);
  if (type == torch::kBFloat16) {
    return oneDnn().gemmBf16(transA, transB, M, N, K, 1.0F, static_cast<const uint16_t*>(A), lda,
                             static_cast<const uint16_t*>(B), ldb, beta, C, ldc);
  }
  return oneDnn().sgemm(transA, transB, M, N, K, 1.0F, static_cast<const float*>(A), lda, static_cast<const float*>(B), ldb,
                        beta, C, ldc);
}

// out [M, N] (float32) (+)= op(A) op(B) on contiguous row-major operands of one type (float32 or
// bfloat16): A [M, K] ('N') or [K, M] ('T'), B [K, N] ('N') or [N, K] ('T'); beta 1 accumulates
// onto what out holds.
void product(char transA, const torch::Tensor& A, char transB, const torch::Tensor& B, torch::Tensor& out, float beta) {
  const auto M = out.size(0), N = out.size(1);
  const auto K = transA == 'N' ? A.size(1) : A.size(0);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (beta == 0.0F) out.zero_();
    return;
  }
  check(gemmCall(A.scalar_type(), transA, transB, M, N, K, A.data_ptr(), A.size(1), B.data_ptr(), B.size(1), beta,
                 out.data_ptr<float>(), N));
}

// y = x W^T + b on [M, K] rows, as addmm: the bias first, the product accumulated onto it. x and
// W float32, or both bfloat16; y float32.
torch::Tensor linearRows(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias) {
  RECORD_FUNCTION("oneDNN sgemm (linear)", std::vector<c10::IValue>());  // named in bench/profile.js's table
  const auto M = x.size(0), N = w.size(0);
  const auto options = x.options().dtype(torch::kFloat);
  torch::Tensor out = bias.defined() ? bias.to(torch::kFloat).reshape({1, N}).expand({M, N}).contiguous()
                                     : torch::empty({M, N}, options);
  product('N', x, 'T', w, out, bias.defined() ? 1.0F : 0.0F);
  return out;
}

// linearRows on x of any leading dimensions, shaped back as x with w.size(0) features.
torch::Tensor linearOnOneDnn(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias) {
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(0);
  return linearRows(x.reshape({-1, x.size(-1)}).contiguous(), w, bias).view(sizes);
}

// The recorded linear layers below take "no bias" as an empty tensor (see linear).
torch::Tensor orNone(const torch::Tensor& bias) { return bias.numel() == 0 ? torch::Tensor() : bias; }

// The products of a linear layer's gradients, on oneDNN: x's gradient g W and W's g^T x (rows of
// x and g as [rows, features]). x and W are what the forward's product took (float32, or
// bfloat16 under mixed precision, g then rounded to bfloat16 too); the gradients are float32,
// the bias's summed from the float32 g.
torch::autograd::tensor_list linearGradients(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                                             const torch::Tensor& w, const torch::Tensor& gradOut) {
  const auto N = w.size(0), K = w.size(1);
  const auto g = gradOut.reshape({-1, N}).contiguous();
  const auto gOperand = g.to(w.scalar_type());
  torch::Tensor gx, gw, gb;
  if (ctx->needs_input_grad(0)) {
    gx = torch::empty({g.size(0), K}, g.options());
    product('N', gOperand, 'N', w, gx, 0.0F);  // [M, N] x [N, K]
    auto sizes = gradOut.sizes().vec();
    sizes.back() = K;
    gx = gx.view(sizes);
  }
  if (ctx->needs_input_grad(1)) {
    gw = torch::empty({N, K}, g.options());
    product('T', gOperand, 'N', x.reshape({-1, K}).contiguous(), gw, 0.0F);  // [N, M] x [M, K]
  }
  if (ctx->needs_input_grad(2)) gb = g.sum(0);  // false for an undefined bias
  return {gx, gw, gb};
}

// A recorded linear layer whose forward saves the operands its product took (x, W) and whose
// gradients' products run on oneDNN (linearGradients). Each layer kind below differs only in
// its forward, and keeps its own name in libtorch's profiler.
template <typename Layer>
class LinearWithOneDnnGradients : public torch::autograd::Function<Layer> {
 public:
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    return linearGradients(ctx, saved[0], saved[1], grads[0]);
  }
};

// The linear layer for training's recorded layers under RecordedProductsOnOneDnn: the same
// products, forward and backward, on oneDNN (libtorch's backward would send them to OpenBLAS,
// whose spinning pool then slows the element-wise ops around them).
class OneDnnLinear : public LinearWithOneDnnGradients<OneDnnLinear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& bias) {
    ctx->save_for_backward({x, w});
    return linearOnOneDnn(x, w, orNone(bias));
  }
};

// The linear layer under RecordedGradientsOnOneDnn: the forward is at::linear itself, on the
// caller's x, so its values are libtorch's to the bit (those that the reference trace's decoder
// ReLUs saw); the gradients' products, twice the forward's work, run on oneDNN.
class LibtorchForwardLinear : public LinearWithOneDnnGradients<LibtorchForwardLinear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& bias) {
    ctx->save_for_backward({x, w});
    return at::linear(x, w, orNone(bias));
  }
};

// torch::matmul(a, b) as batchedMatmul takes it, under RecordedGradientsOnOneDnn: the forward is
// libtorch's matmul (the reference's values: the decoder's q k^T cosines are its ReLU scores), the
// gradients' products g b^T and a^T g are batchedMatmul's, on oneDNN.
class LibtorchForwardMatmul : public torch::autograd::Function<LibtorchForwardMatmul> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return torch::matmul(a, b);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& g = grads[0];
    torch::Tensor ga, gb;
    if (ctx->needs_input_grad(0)) ga = batchedMatmul(g, saved[1].transpose(-2, -1));
    if (ctx->needs_input_grad(1)) gb = batchedMatmul(saved[0].transpose(-2, -1), g);
    return {ga, gb};
  }
};

torch::Tensor batchedProducts(const torch::Tensor& a, const torch::Tensor& b);

// The linear layer under BFloat16Products where oneDNN's gemm_bf16bf16f32 was found: x and W
// rounded to bfloat16 (autograd's view of it: the identity, as for libtorch's .to()), the product
// accumulated in float32 onto the float32 bias and left float32, never rounded to bfloat16 and
// widened again as libtorch's bfloat16 linear's is: fewer copies (measured 1.0-1.5x faster per
// layer on ViT-S's, Zen 4) and a more exact result. Its gradients' products take the saved
// bfloat16 operands and g rounded to bfloat16, results float32.
class BFloat16Linear : public LinearWithOneDnnGradients<BFloat16Linear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& bias) {
    const auto xb = x.to(torch::kBFloat16);
    const auto wb = w.to(torch::kBFloat16).contiguous();
    ctx->save_for_backward({xb, wb});
    return linearOnOneDnn(xb, wb, orNone(bias));
  }
};

// batchedMatmul's product as BFloat16Linear computes a linear layer's: bfloat16 operands, float32
// results, forward and backward.
class BFloat16Matmul : public torch::autograd::Function<BFloat16Matmul> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    const auto ab = a.to(torch::kBFloat16);
    const auto bb = b.to(torch::kBFloat16);
    ctx->save_for_backward({ab, bb});
    return batchedProducts(ab, bb);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto g = grads[0].to(torch::kBFloat16);
    torch::Tensor ga, gb;
    if (ctx->needs_input_grad(0)) ga = batchedProducts(g, saved[1].transpose(-2, -1));
    if (ctx->needs_input_grad(1)) gb = batchedProducts(saved[0].transpose(-2, -1), g);
    return {ga, gb};
  }
};

// linear under BFloat16Products (or a bfloat16 weight taking float32 x): on gemm_bf16bf16f32
// where it was found, else libtorch's bfloat16 product widened back to float32.
torch::Tensor linearInBFloat16(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  const bool recorded = torch::GradMode::is_enabled() &&
                        (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
  const bool shapesFit = weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1) &&
                         (!bias.defined() || (bias.dim() == 1 && bias.size(0) == weight.size(0)));
  // recorded, the gradients come back float32: only for float32 weights and biases (master weights)
  const bool floatParameters = weight.scalar_type() == torch::kFloat && (!bias.defined() || bias.scalar_type() == torch::kFloat);
  if (!shapesFit || !eligibleInBFloat16({&x, &weight, &bias}) || (recorded && !floatParameters))
    return at::linear(toBFloat16(x), toBFloat16(weight), toBFloat16(bias)).to(torch::kFloat);
  if (recorded) return BFloat16Linear::apply(x, weight, bias.defined() ? bias : torch::empty({0}, weight.options()));
  return linearOnOneDnn(x.to(torch::kBFloat16), weight.to(torch::kBFloat16).contiguous(), bias);
}

}  // namespace

// Debian's libtorch links libdnnl.so.2 / .3 and an official build may export oneDNN's symbols
// itself: either way dlsym on libtorch_cpu's own handle searches it and its dependencies, which
// Node's local dlopen of the addon does not put in the global scope.
void* symbolNearTorch(const char* symbol) {
  if (void* found = dlsym(RTLD_DEFAULT, symbol)) return found;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) == 0 || info.dli_fname == nullptr) return nullptr;
  void* torch = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
  if (torch == nullptr) return nullptr;
  void* found = dlsym(torch, symbol);
  dlclose(torch);  // only drops the reference RTLD_NOLOAD took
  return found;
}

bool openMpWorkersSpinLong() {
  static const bool spinLong = [] {
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    if (policy != nullptr && strcasecmp(policy, "passive") == 0) return false;
    const char* count = std::getenv("GOMP_SPINCOUNT");
    if (count == nullptr || (policy != nullptr && strcasecmp(policy, "active") == 0)) return true;
    // a number with an optional k, M or G, or "infinite" / "infinity" (libgomp's env.c)
    char* end = nullptr;
    const double rounds = std::strtod(count, &end);
    if (end == count) return true;
    const double scale = *end == 'k' || *end == 'K' ? 1e3 : *end == 'M' ? 1e6 : *end == 'G' ? 1e9 : 1.0;
    return rounds * scale >= 1e5;
  }();
  return spinLong;
}

int openMpThreads() {
  const auto& omp = openMp();
  return omp.maxThreads == nullptr ? 0 : omp.maxThreads();
}

OpenMpThreadCount::OpenMpThreadCount(int threads) {
  const auto& omp = openMp();
  if (threads <= 0 || omp.setThreads == nullptr) return;
  const int now = omp.maxThreads();
  if (now == threads) return;
  restore_ = now;
  omp.setThreads(threads);
}

OpenMpThreadCount::~OpenMpThreadCount() {
  if (restore_ > 0) openMp().setThreads(restore_);
}

std::string cpuGemmBackend() { return oneDnn().name; }

bool cpuBf16ProductsFast() {
  static const bool fast = [] {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::stringstream flags;
    flags << cpuinfo.rdbuf();
    const auto text = flags.str();
    const bool isa = text.find(" avx512_bf16") != std::string::npos || text.find(" amx_bf16") != std::string::npos;
    return at::hasMKLDNN() && isa;
  }();
  return fast;
}

bool inferenceAvoidsBlas() { return oneDnn().sgemm != nullptr; }

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  // a bfloat16 weight (a bfloat16 model's, on the CPU) takes float32 activations in bfloat16 too
  if (inBFloat16(x) || (x.scalar_type() == torch::kFloat && weight.scalar_type() == torch::kBFloat16))
    return linearInBFloat16(x, weight, bias);
  const bool recorded = torch::GradMode::is_enabled() &&
                        (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
  auto* packs = ActivePackedWeights::current();
  if (packs != nullptr && !recorded && x.dim() >= 1 && x.scalar_type() == torch::kFloat && x.device().is_cpu()) {
    auto packed = packs->linear(x.reshape({-1, x.size(-1)}).contiguous(), weight, bias);
    if (packed.defined()) {
      auto sizes = x.sizes().vec();
      sizes.back() = packed.size(1);
      return packed.view(sizes);
    }
  }
  const bool forwardOnOneDnn = !recorded || RecordedProductsOnOneDnn::active();
  const bool gradientsOnOneDnn = forwardOnOneDnn || RecordedGradientsOnOneDnn::active();
  if (weight.dim() != 2 || x.dim() < 1 || x.size(-1) != weight.size(1) || !gradientsOnOneDnn ||
      !eligible({&x, &weight, &bias}, /*allowGrad=*/true)) {
    return at::linear(x, weight, bias);
  }
  auto w = weight.contiguous();
  if (recorded) {
    // libtorch 1.13's Function::apply cannot take an undefined tensor: no bias is an empty one
    const auto b = bias.defined() ? bias : torch::empty({0}, w.options());
    return forwardOnOneDnn ? OneDnnLinear::apply(x, w, b) : LibtorchForwardLinear::apply(x, w, b);
  }
  return linearOnOneDnn(x, w, bias);
}

torch::Tensor batchedMatmul(const torch::Tensor& a, const torch::Tensor& b) {
  const bool shapesFit = a.dim() >= 3 && a.dim() == b.dim() && a.sizes().slice(0, a.dim() - 2) == b.sizes().slice(0, b.dim() - 2) &&
                         a.size(-1) == b.size(-2);
  const bool recorded = torch::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad());
  if (inBFloat16(a)) {
    if (!shapesFit || !eligibleInBFloat16({&a, &b})) return torch::matmul(toBFloat16(a), toBFloat16(b)).to(torch::kFloat);
    if (recorded) return BFloat16Matmul::apply(a, b);
    return batchedProducts(a.to(torch::kBFloat16), b.to(torch::kBFloat16));
  }
  if (!shapesFit || !eligible({&a, &b}, /*allowGrad=*/true)) return torch::matmul(a, b);
  if (recorded) return RecordedGradientsOnOneDnn::active() ? LibtorchForwardMatmul::apply(a, b) : torch::matmul(a, b);
  return batchedProducts(a, b);
}

namespace {

// a [..., M, K] times b [..., K, N], equal batch shapes, both float32 or both bfloat16 (either
// may be a transposed view): one oneDNN product per batch matrix, the result float32.
torch::Tensor batchedProducts(const torch::Tensor& a, const torch::Tensor& b) {
  const auto nd = a.dim();
  const auto M = a.size(-2), K = a.size(-1), N = b.size(-1);
  Layout la{}, lb{};
  auto A = a, B = b;
  if (!layoutOf(M, K, A.stride(-2), A.stride(-1), la)) {
    A = A.contiguous();
    la = {'N', K};
  }
  if (!layoutOf(K, N, B.stride(-2), B.stride(-1), lb)) {
    B = B.contiguous();
    lb = {'N', N};
  }
  auto outSizes = a.sizes().vec();
  outSizes.back() = N;
  auto out = torch::empty(outSizes, a.options().dtype(torch::kFloat));
  int64_t batch = 1;
  for (int64_t d = 0; d < nd - 2; ++d) batch *= a.size(d);
  if (batch == 0 || M == 0 || N == 0) return out;
  if (K == 0) return out.zero_();
  // each batch matrix's offset from the batch dimensions' strides (views of permuted q/k/v)
  auto offsets = [&](const torch::Tensor& t) {
    std::vector<int64_t> result(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i) {
      int64_t rest = i, offset = 0;
      for (int64_t d = nd - 3; d >= 0; --d) {
        offset += (rest % t.size(d)) * t.stride(d);
        rest /= t.size(d);
      }
      result[static_cast<size_t>(i)] = offset;
    }
    return result;
  };
  RECORD_FUNCTION("oneDNN sgemm (batched)", std::vector<c10::IValue>());
  const auto offA = offsets(A), offB = offsets(B);
  const auto type = A.scalar_type();
  const auto bytes = static_cast<int64_t>(A.element_size());
  const auto* pa = static_cast<const char*>(A.data_ptr());
  const auto* pb = static_cast<const char*>(B.data_ptr());
  float* pc = out.data_ptr<float>();
  // one product per batch matrix on each OpenMP worker (oneDNN runs single-threaded inside a
  // parallel region), each worker given at least kSmallProduct of work; a single large matrix is
  // split by oneDNN itself
  const int64_t grain = std::max<int64_t>(1, kSmallProduct / std::max<int64_t>(1, M * N * K));
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      check(gemmCall(type, la.trans, lb.trans, M, N, K, pa + offA[static_cast<size_t>(i)] * bytes, la.ld,
                     pb + offB[static_cast<size_t>(i)] * bytes, lb.ld, 0.0F, pc + i * M * N, N));
    }
  });
  return out;
}

// Query rows per block of softmaxAttention: a head's whole matrix when the heads give every thread
// two or more, else fewer rows so that they do. Blocks of 48 rows or fewer made its products up to
// 2x slower in ViT-B/392 (oneDNN repacks k and v for every block) with no gain from the scores
// staying in cache. A block is a multiple of 48 rows, the rows of oneDNN's AVX-512 sgemm panels
// (16 for AVX2's): it starts where a panel of the whole product would, so each score is summed in
// the same order and the result is that of the unblocked path, bit for bit.
constexpr int64_t kPanelRows = 48;
int64_t attentionRows(int64_t queries, int64_t matrices) {
  const int64_t threads = std::max(1, openMpThreads());
  const int64_t blocksWanted = (2 * threads + matrices - 1) / matrices;
  if (blocksWanted <= 1) return queries;
  const int64_t rows = (queries + blocksWanted - 1) / blocksWanted;
  return std::max<int64_t>(1, (rows + kPanelRows - 1) / kPanelRows) * kPanelRows;
}

}  // namespace

torch::Tensor softmaxAttention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t rowsPerBlock) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "softmaxAttention takes [B, H, N, d] q, k and v");
  const auto B = q.size(0), H = q.size(1), N = q.size(2), d = q.size(3);
  const auto Nk = k.size(2);
  Layout lq{}, lk{}, lv{};
  // each head's rows must be plain row-major matrices (any row stride) for the sgemm calls below
  const auto rowMajor = [](const torch::Tensor& t, Layout& layout) {
    return layoutOf(t.size(2), t.size(3), t.stride(2), t.stride(3), layout) && layout.trans == 'N';
  };
  // Under mixed precision q, k and v are rounded to bfloat16 once, whole, for gemm_bf16bf16f32,
  // and each block's probabilities after the float32 softmax, as the unblocked path rounds them.
  const bool mixed = inBFloat16(q);
  const bool recording = torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  const bool operandsFit = mixed ? !recording && eligibleInBFloat16({&q, &k, &v}) : eligible({&q, &k, &v});
  const bool shapesFit = k.size(0) == B && v.size(0) == B && k.size(1) == H && v.size(1) == H && k.size(3) == d &&
                         v.size(2) == Nk && v.size(3) == d && N > 0 && Nk > 0 && d > 0;
  const auto operand = [&](const torch::Tensor& t) { return mixed && operandsFit && shapesFit ? t.to(torch::kBFloat16) : t; };
  const auto Q = operand(q), K = operand(k), V = operand(v);
  const bool blocked = operandsFit && shapesFit && rowMajor(Q, lq) && rowMajor(K, lk) && rowMajor(V, lv);
  // INP_FORMER_ATTENTION=whole keeps the unblocked path, for comparisons
  static const bool wholeMatrices = [] {
    const char* choice = std::getenv("INP_FORMER_ATTENTION");
    return choice != nullptr && std::strcmp(choice, "whole") == 0;
  }();
  if (!blocked || (wholeMatrices && rowsPerBlock == 0)) {
    auto attn = softmaxLastDim(batchedMatmul(q, k.transpose(-2, -1)));
    return batchedMatmul(attn, v).transpose(1, 2).reshape({B, N, H * d});
  }
  RECORD_FUNCTION("oneDNN attention (blocked)", std::vector<c10::IValue>());
  const int64_t rows = rowsPerBlock > 0 ? std::min(rowsPerBlock, N) : std::min(attentionRows(N, B * H), N);
  const int64_t blocks = (N + rows - 1) / rows;
  const auto type = Q.scalar_type();
  const auto bytes = static_cast<int64_t>(Q.element_size());
  auto out = torch::empty({B, N, H * d}, q.options());
  const auto* pq = static_cast<const char*>(Q.data_ptr());
  const auto* pk = static_cast<const char*>(K.data_ptr());
  const auto* pv = static_cast<const char*>(V.data_ptr());
  float* po = out.data_ptr<float>();
  at::parallel_for(0, B * H * blocks, 1, [&](int64_t begin, int64_t end) {
    // this worker's, reused block after block
    auto scores = torch::empty({rows, Nk}, q.options());
    auto probabilities = mixed ? torch::empty({rows, Nk}, Q.options()) : scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t matrix = task / blocks, b = matrix / H, h = matrix % H;
      const int64_t first = (task % blocks) * rows, count = std::min(rows, N - first);
      auto block = scores.narrow(0, 0, count);
      check(gemmCall(type, 'N', 'T', count, Nk, d, pq + (b * Q.stride(0) + h * Q.stride(1) + first * lq.ld) * bytes, lq.ld,
                     pk + (b * K.stride(0) + h * K.stride(1)) * bytes, lk.ld, 0.0F, block.data_ptr<float>(), Nk));
      at::_softmax_out(block, block, -1, false);
      auto p = probabilities.narrow(0, 0, count);
      if (mixed) p.copy_(block);
      check(gemmCall(type, 'N', 'N', count, d, Nk, p.data_ptr(), Nk, pv + (b * V.stride(0) + h * V.stride(1)) * bytes, lv.ld,
                     0.0F, po + (b * N + first) * H * d + h * d, H * d));
    }
  });
  return out;
}

}  // namespace inpformer
