// cosine.cpp - unit vectors and cosine similarities: libtorch's forward, closed-form gradients.
#include "cosine.h"

#include <algorithm>

#include "cpu_gemm.h"

namespace F = torch::nn::functional;

namespace inpformer {
namespace {

constexpr double kNormalizeEps = 1e-12;  // F::NormalizeFuncOptions's default
constexpr double kCosineEps = 1e-8;      // F::CosineSimilarityFuncOptions's default
// Rows whose norms are at least this leave cosine_similarity's eps untouched in every libtorch
// version (1.13 clamps the product of the squared norms at eps^2, 2.x each norm at eps).
constexpr double kNormFarFromEps = 1e-3;

bool recorded(std::initializer_list<const torch::Tensor*> tensors) {
  if (!torch::GradMode::is_enabled()) return false;
  return std::any_of(tensors.begin(), tensors.end(), [](const torch::Tensor* t) { return t->requires_grad(); });
}

torch::Tensor cosineByLibtorch(const torch::Tensor& a, const torch::Tensor& c) {
  return F::cosine_similarity(a.unsqueeze(2), c.unsqueeze(1), F::CosineSimilarityFuncOptions().dim(-1).eps(kCosineEps));
}

// y = x / max(|x|, eps) by F::normalize's own ops; dy/dx = (I - y y^T) / |x|, so x's gradient is
// (g - y <g, y>) / |x|, and g / eps for a row clamped at eps (y is then x / eps).
class UnitVectors : public torch::autograd::Function<UnitVectors> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x) {
    auto denom = x.norm(2.0, -1, true).clamp_min(kNormalizeEps);
    auto y = x / denom.expand_as(x);
    ctx->save_for_backward({y, denom});
    return y;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &y = saved[0], &denom = saved[1];
    const auto& g = grads[0];
    auto dot = (g * y).sum(-1, true);
    dot.masked_fill_(denom.le(kNormalizeEps), 0.0);
    auto gx = torch::addcmul(g, y, dot, -1.0);
    gx.div_(denom);
    return {gx};
  }
};

// cos[b, n, m] = <a_n, c_m> / (|a_n| |c_m|) by F::cosine_similarity's own ops, with
// d cos / d c_m = a_n / (|a_n| |c_m|) - cos c_m / |c_m|^2 (and symmetrically for a): two batched
// products of the [B, N, M] gradient instead of autograd's passes over [B, N, M, C].
class CosineMatrix : public torch::autograd::Function<CosineMatrix> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& c,
                               const torch::Tensor& normA, const torch::Tensor& normC) {
    auto cos = cosineByLibtorch(a, c);
    ctx->save_for_backward({a, c, normA, normC, cos});
    return cos;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &a = saved[0], &c = saved[1], &normA = saved[2], &normC = saved[3], &cos = saved[4];
    const auto& g = grads[0];
    const auto scaled = g / (normA.unsqueeze(2) * normC.unsqueeze(1));
    const auto weighted = g * cos;
    // float32 products on oneDNN (batchedMatmul): a BLAS call here would wake OpenBLAS's pool,
    // which then spins against the backward's OpenMP workers (cpu_gemm.h); never bfloat16 ones,
    // whatever the step's mixed precision
    BFloat16Products float32Products(false);
    torch::Tensor ga, gc;
    if (ctx->needs_input_grad(0))
      ga = batchedMatmul(scaled, c) - a * (weighted.sum(2) / normA.square()).unsqueeze(-1);
    if (ctx->needs_input_grad(1))
      gc = batchedMatmul(scaled.transpose(1, 2), a) - c * (weighted.sum(1) / normC.square()).unsqueeze(-1);
    return {ga, gc, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor unitVectors(const torch::Tensor& x) {
  if (!recorded({&x})) return F::normalize(x, F::NormalizeFuncOptions().p(2.0).dim(-1).eps(kNormalizeEps));
  return UnitVectors::apply(x);
}

torch::Tensor cosineMatrix(const torch::Tensor& a, const torch::Tensor& c) {
  if (!recorded({&a, &c}) || a.numel() == 0 || c.numel() == 0) return cosineByLibtorch(a, c);
  torch::Tensor normA, normC;
  {
    torch::NoGradGuard noGrad;
    normA = a.norm(2.0, -1);
    normC = c.norm(2.0, -1);
    const bool farFromEps = std::min(normA.min().item<double>(), normC.min().item<double>()) >= kNormFarFromEps;
    if (!farFromEps) normA = torch::Tensor();
  }
  if (!normA.defined()) return cosineByLibtorch(a, c);
  return CosineMatrix::apply(a, c, normA, normC);
}

}  // namespace inpformer
