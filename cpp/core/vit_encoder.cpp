// vit_encoder.cpp - DINOv2 ViT forward, op for op as facebookresearch/dinov2 (no xFormers).
#include "vit_encoder.h"

#include <cmath>

#include "activations.h"
#include "errors.h"
#include "linear.h"
#include "per_image.h"

namespace F = torch::nn::functional;

namespace inpformer {

LayerScaleImpl::LayerScaleImpl(int64_t dim) {
  gamma = register_parameter("gamma", torch::ones({dim}));
}

ViTAttentionImpl::ViTAttentionImpl(int64_t dim, int64_t heads) : numHeads(heads) {
  scale = std::pow(static_cast<double>(dim / heads), -0.5);
  qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, dim * 3).bias(true)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor ViTAttentionImpl::forward(const torch::Tensor& x) {
  const auto B = x.size(0), N = x.size(1), C = x.size(2);
  auto qkvOut = linear(qkv, x).reshape({B, N, 3, numHeads, C / numHeads}).permute({2, 0, 3, 1, 4});
  auto q = qkvOut[0] * scale;
  auto k = qkvOut[1];
  auto v = qkvOut[2];
  return linear(proj, softmaxAttention(q, k, v));
}

ViTMlpImpl::ViTMlpImpl(int64_t dim, int64_t hidden, bool useSwiglu) : swiglu(useSwiglu) {
  if (swiglu) {
    fc1 = register_module("w12", torch::nn::Linear(dim, 2 * hidden));
    fc2 = register_module("w3", torch::nn::Linear(hidden, dim));
  } else {
    fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
  }
}

torch::Tensor ViTMlpImpl::forward(const torch::Tensor& x) {
  if (swiglu) {
    auto x12 = linear(fc1, x).chunk(2, -1);
    return linear(fc2, F::silu(x12[0]) * x12[1]);
  }
  return linear(fc2, geluOf(linear(fc1, x)));
}

ViTBlockImpl::ViTBlockImpl(const EncoderConfig& cfg) {
  auto ln = torch::nn::LayerNormOptions({cfg.embedDim}).eps(cfg.lnEps);
  norm1 = register_module("norm1", torch::nn::LayerNorm(ln));
  attn = register_module("attn", ViTAttention(cfg.embedDim, cfg.numHeads));
  ls1 = register_module("ls1", LayerScale(cfg.embedDim));
  norm2 = register_module("norm2", torch::nn::LayerNorm(ln));
  mlp = register_module("mlp", ViTMlp(cfg.embedDim, cfg.mlpHiddenDim, cfg.swiglu));
  ls2 = register_module("ls2", LayerScale(cfg.embedDim));
}

torch::Tensor ViTBlockImpl::forward(torch::Tensor x) {
  x = x + ls1(attn(norm1(x)));
  x = x + ls2(mlp(norm2(x)));
  return x;
}

PatchEmbedImpl::PatchEmbedImpl(int64_t patchSize, int64_t dim) {
  proj = register_module(
      "proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(3, dim, patchSize).stride(patchSize)));
}

torch::Tensor PatchEmbedImpl::forward(const torch::Tensor& x) {
  return convolvePerImage(x, [&](const torch::Tensor& image) { return proj(image); }).flatten(2).transpose(1, 2);
}

DinoVisionTransformerImpl::DinoVisionTransformerImpl(const EncoderConfig& cfg) : cfg_(cfg) {
  const auto D = cfg.embedDim;
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, D}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, cfg.posGridSize * cfg.posGridSize + 1, D}));
  if (cfg.numRegisterTokens > 0) {
    register_tokens = register_parameter("register_tokens", torch::zeros({1, cfg.numRegisterTokens, D}));
  }
  mask_token = register_parameter("mask_token", torch::zeros({1, D}));
  patch_embed = register_module("patch_embed", PatchEmbed(cfg.patchSize, D));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.depth; ++i) blocks->push_back(ViTBlock(cfg));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(cfg.lnEps)));
}

torch::Tensor DinoVisionTransformerImpl::interpolatePosEncoding(int64_t gridH, int64_t gridW) {
  if (gridH == cfg_.posGridSize && gridW == cfg_.posGridSize) return pos_embed;
  auto& cache = resizedPositions_;
  const bool fresh = cache.value.defined() && cache.gridH == gridH && cache.gridW == gridW &&
                     cache.source.unsafeGetStorageImpl() == pos_embed.storage().unsafeGetStorageImpl() &&
                     cache.version == pos_embed._version();
  if (!fresh) {
    torch::NoGradGuard noGrad;  // the encoder is frozen: the table never needs a gradient
    cache = {gridH, gridW, pos_embed.storage(), pos_embed._version(), resizePosEncoding(gridH, gridW)};
  }
  return cache.value;
}

torch::Tensor DinoVisionTransformerImpl::resizePosEncoding(int64_t gridH, int64_t gridW) {
  const int64_t n = cfg_.posGridSize;
  auto pos = pos_embed.to(torch::kFloat);
  auto classPos = pos.select(1, 0);
  auto patchPos = pos.slice(1, 1).reshape({1, n, n, cfg_.embedDim}).permute({0, 3, 1, 2});
  // dinov2 passes scale_factor=((grid + 0.1) / sqrt(N)): torch then samples the source with
  // step 1/scale (37 / 16.1), not 37 / 16. Passing the scales to the op reproduces that.
  const double sh = (static_cast<double>(gridH) + cfg_.interpolateOffset) / static_cast<double>(n);
  const double sw = (static_cast<double>(gridW) + cfg_.interpolateOffset) / static_cast<double>(n);
  const auto outH = static_cast<int64_t>(std::floor(n * sh));
  const auto outW = static_cast<int64_t>(std::floor(n * sw));
  if (outH != gridH || outW != gridW) {
    throw CoreError(codes::kInvalidArgument, "position embedding interpolation gives a " +
                                                 std::to_string(outH) + "x" + std::to_string(outW) +
                                                 " grid for a " + std::to_string(gridH) + "x" +
                                                 std::to_string(gridW) + " patch grid");
  }
  auto resized = at::upsample_bicubic2d(patchPos, {outH, outW}, /*align_corners=*/false, sh, sw);
  resized = resized.permute({0, 2, 3, 1}).reshape({1, -1, cfg_.embedDim});
  return torch::cat({classPos.unsqueeze(0), resized}, 1).to(pos_embed.scalar_type());
}

torch::Tensor DinoVisionTransformerImpl::prepareTokens(const torch::Tensor& images) {
  const auto B = images.size(0);
  const auto H = images.size(2), W = images.size(3);
  if (H % cfg_.patchSize != 0 || W % cfg_.patchSize != 0) {
    throw CoreError(codes::kInvalidArgument, "image size " + std::to_string(H) + "x" + std::to_string(W) +
                                                 " is not a multiple of the patch size " +
                                                 std::to_string(cfg_.patchSize));
  }
  auto x = patch_embed(images);
  x = torch::cat({cls_token.expand({B, -1, -1}), x}, 1);
  x = x + interpolatePosEncoding(H / cfg_.patchSize, W / cfg_.patchSize);
  if (cfg_.numRegisterTokens > 0) {
    x = torch::cat({x.slice(1, 0, 1), register_tokens.expand({B, -1, -1}), x.slice(1, 1)}, 1);
  }
  return x;
}

void DinoVisionTransformerImpl::forEachBlockOutput(const torch::Tensor& images, int64_t lastBlock,
                                                   const std::function<void(int64_t, const torch::Tensor&)>& visit) {
  auto x = prepareTokens(images);
  for (int64_t i = 0; i <= lastBlock; ++i) {
    x = blocks->ptr<ViTBlockImpl>(i)->forward(x);
    visit(i, x);
  }
}

}  // namespace inpformer
