// vit_encoder.h - the frozen DINOv2 ViT encoder (Meta's dinov2 code, parameter names included).
// Returns the token sequence after each block, pre-norm, as INP-Former consumes it.
#pragma once
#include <torch/torch.h>

#include <functional>

#include "config.h"

namespace inpformer {

// LayerScale: x * gamma (a module of its own so the parameter is named ls1.gamma).
struct LayerScaleImpl : torch::nn::Module {
  explicit LayerScaleImpl(int64_t dim);
  torch::Tensor forward(const torch::Tensor& x) { return x * gamma; }
  torch::Tensor gamma;
};
TORCH_MODULE(LayerScale);

// Self-attention with a fused qkv projection, explicit softmax (no fused SDPA: parity).
struct ViTAttentionImpl : torch::nn::Module {
  ViTAttentionImpl(int64_t dim, int64_t numHeads);
  torch::Tensor forward(const torch::Tensor& x);
  int64_t numHeads;
  double scale;
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(ViTAttention);

// fc1 -> GELU(erf) -> fc2, or DINOv2-giant's SwiGLU (w12 -> silu(a) * b -> w3).
struct ViTMlpImpl : torch::nn::Module {
  ViTMlpImpl(int64_t dim, int64_t hidden, bool swiglu);
  torch::Tensor forward(const torch::Tensor& x);
  bool swiglu;
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(ViTMlp);

struct ViTBlockImpl : torch::nn::Module {
  ViTBlockImpl(const EncoderConfig& cfg);
  torch::Tensor forward(torch::Tensor x);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  ViTAttention attn{nullptr};
  LayerScale ls1{nullptr}, ls2{nullptr};
  ViTMlp mlp{nullptr};
};
TORCH_MODULE(ViTBlock);

struct PatchEmbedImpl : torch::nn::Module {
  PatchEmbedImpl(int64_t patchSize, int64_t dim);
  torch::Tensor forward(const torch::Tensor& x);  // [B,3,H,W] -> [B,N,D]
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

class DinoVisionTransformerImpl : public torch::nn::Module {
 public:
  explicit DinoVisionTransformerImpl(const EncoderConfig& cfg);

  // Patch tokens + cls (+ interpolated position embedding) + registers: [B, 1+R+N, D].
  torch::Tensor prepareTokens(const torch::Tensor& images);
  // The position table resized to an h x w patch grid as dinov2 does it (bicubic,
  // scale factor (grid + offset) / 37 passed as a factor, not a size). [1, 1+h*w, D]. The last
  // grid's result is kept until the table changes: every image of a model has the same size.
  torch::Tensor interpolatePosEncoding(int64_t gridH, int64_t gridW);
  // Runs blocks 0..lastBlock and hands each one's output (pre-norm, [B, 1+R+N, D]) to `visit`
  // as it is made: the caller keeps what it needs, and every other layer is freed at once.
  void forEachBlockOutput(const torch::Tensor& images, int64_t lastBlock,
                          const std::function<void(int64_t block, const torch::Tensor& out)>& visit);

  const EncoderConfig& config() const { return cfg_; }

  torch::Tensor cls_token, pos_embed, register_tokens, mask_token;
  PatchEmbed patch_embed{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  torch::Tensor resizePosEncoding(int64_t gridH, int64_t gridW);

  EncoderConfig cfg_;
  // interpolatePosEncoding's last result and what it was made from. Holding the table's storage
  // keeps its address from being reused, so "same storage, same version" means same values
  // (a load copies in place and bumps the version; a cast or a device move makes a new storage).
  struct ResizedPositions {
    int64_t gridH = -1, gridW = -1;
    c10::Storage source;
    int64_t version = 0;
    torch::Tensor value;
  } resizedPositions_;
};
TORCH_MODULE(DinoVisionTransformer);

}  // namespace inpformer
