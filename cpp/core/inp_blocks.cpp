// inp_blocks.cpp - INP Extractor and INP-guided decoder blocks, op for op as models/vision_transformer.py.
#include "inp_blocks.h"

#include <cmath>

#include "activations.h"
#include "cosine.h"
#include "linear.h"

namespace inpformer {
namespace {

torch::nn::Linear linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

torch::nn::LayerNorm layerNorm(int64_t dim, double eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(eps));
}

// [B, N, C] -> q [B, H, N, C/H]; [B, M, C] -> k, v [B, H, M, C/H] from the fused kv projection.
// The same views as upstream's reshape, permute and [0] / [1], without its selects: in training
// each select's backward writes a zero tensor the size of everything it selects from (twice
// that of kv's output, for k and for v, then sums them), which took 3.4% of a ViT-S/14 392 px
// step. Without them: the same values, the same gradients.
struct HeadSplit {
  torch::Tensor q, k, v;
};
HeadSplit splitHeads(const torch::Tensor& qOut, const torch::Tensor& kvOut, int64_t heads) {
  const auto B = qOut.size(0), N = qOut.size(1), C = qOut.size(2), M = kvOut.size(1);
  auto q = qOut.reshape({B, N, heads, C / heads}).permute({0, 2, 1, 3});
  auto kv = kvOut.reshape({B, M, 2, heads, C / heads}).permute({2, 0, 3, 1, 4}).unbind(0);
  return {q, kv[0], kv[1]};
}

torch::Tensor mergeHeads(const torch::Tensor& x) {  // [B, H, N, d] -> [B, N, H*d]
  const auto B = x.size(0), N = x.size(2);
  return x.transpose(1, 2).reshape({B, N, -1});
}

}  // namespace

InpMlpImpl::InpMlpImpl(int64_t dim, int64_t hidden, bool bias) {
  fc1 = register_module("fc1", linear(dim, hidden, bias));
  fc2 = register_module("fc2", linear(hidden, dim, bias));
}

torch::Tensor InpMlpImpl::forward(const torch::Tensor& x) { return linear(fc2, geluOf(linear(fc1, x))); }

InpExtractorAttentionImpl::InpExtractorAttentionImpl(int64_t dim, int64_t heads, bool qkvBias)
    : numHeads(heads), scale(std::pow(static_cast<double>(dim / heads), -0.5)) {
  q = register_module("q", linear(dim, dim, qkvBias));
  kv = register_module("kv", linear(dim, dim * 2, qkvBias));
  proj = register_module("proj", linear(dim, dim, true));
}

torch::Tensor InpExtractorAttentionImpl::forward(const torch::Tensor& queries, const torch::Tensor& tokens) {
  auto h = splitHeads(linear(q, queries), linear(kv, tokens), numHeads);
  auto attn = softmaxLastDim(batchedMatmul(h.q, h.k.transpose(-2, -1)) * scale);
  return linear(proj, mergeHeads(batchedMatmul(attn, h.v)));
}

InpExtractorBlockImpl::InpExtractorBlockImpl(int64_t dim, int64_t heads, double mlpRatio, bool qkvBias,
                                             bool mlpBias, double lnEps) {
  norm1 = register_module("norm1", layerNorm(dim, lnEps));
  attn = register_module("attn", InpExtractorAttention(dim, heads, qkvBias));
  norm2 = register_module("norm2", layerNorm(dim, lnEps));
  mlp = register_module("mlp", InpMlp(dim, static_cast<int64_t>(dim * mlpRatio), mlpBias));
}

torch::Tensor InpExtractorBlockImpl::forward(const torch::Tensor& prototypes, const torch::Tensor& tokens) {
  auto p = prototypes + attn(norm1(prototypes), norm1(tokens));
  return p + mlp(norm2(p));
}

InpGuidedAttentionImpl::InpGuidedAttentionImpl(int64_t dim, int64_t heads, bool qkvBias) : numHeads(heads) {
  learn_scale = register_parameter("learn_scale", torch::ones({heads, 1, 1}));
  q = register_module("q", linear(dim, dim, qkvBias));
  kv = register_module("kv", linear(dim, dim * 2, qkvBias));
  proj = register_module("proj", linear(dim, dim, true));
}

torch::Tensor InpGuidedAttentionImpl::forward(const torch::Tensor& tokens, const torch::Tensor& prototypes) {
  auto h = splitHeads(linear(q, tokens), linear(kv, prototypes), numHeads);
  auto qn = unitVectors(h.q);
  auto kn = unitVectors(h.k);
  auto cosine = batchedMatmul(qn, kn.transpose(-2, -1));
  if (is_training()) {
    torch::NoGradGuard noGrad;
    reluMargin = cosine.abs().min().item<double>();
  }
  auto attn = torch::relu(cosine * learn_scale);
  return linear(proj, mergeHeads(batchedMatmul(attn, h.v)));
}

InpDecoderBlockImpl::InpDecoderBlockImpl(int64_t dim, int64_t heads, double mlpRatio, bool qkvBias,
                                         bool mlpBias, double lnEps) {
  norm1 = register_module("norm1", layerNorm(dim, lnEps));
  attn = register_module("attn", InpGuidedAttention(dim, heads, qkvBias));
  norm2 = register_module("norm2", layerNorm(dim, lnEps));
  mlp = register_module("mlp", InpMlp(dim, static_cast<int64_t>(dim * mlpRatio), mlpBias));
}

torch::Tensor InpDecoderBlockImpl::forward(const torch::Tensor& tokens, const torch::Tensor& prototypes) {
  auto y = attn(norm1(tokens), norm1(prototypes));
  return y + mlp(norm2(y));
}

}  // namespace inpformer
