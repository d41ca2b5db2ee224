// inp_blocks.h - the INP Extractor block and the INP-guided decoder block of INP-Former
// (upstream names: Aggregation_Block and Prototype_Block), and their MLP.
#pragma once
#include <torch/torch.h>

#include <limits>

namespace inpformer {

// fc1 -> GELU -> fc2. Upstream's has biases; anomalib's extractor/decoder MLPs have none.
struct InpMlpImpl : torch::nn::Module {
  InpMlpImpl(int64_t dim, int64_t hidden, bool bias);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(InpMlp);

// Softmax cross-attention of the M prototypes (queries) over the image tokens.
struct InpExtractorAttentionImpl : torch::nn::Module {
  InpExtractorAttentionImpl(int64_t dim, int64_t numHeads, bool qkvBias);
  torch::Tensor forward(const torch::Tensor& queries, const torch::Tensor& tokens);
  int64_t numHeads;
  double scale;
  torch::nn::Linear q{nullptr}, kv{nullptr}, proj{nullptr};
};
TORCH_MODULE(InpExtractorAttention);

// p = p + attn(n1(p), n1(x)); p = p + mlp(n2(p)). One norm1 for queries and keys, as upstream.
struct InpExtractorBlockImpl : torch::nn::Module {
  InpExtractorBlockImpl(int64_t dim, int64_t numHeads, double mlpRatio, bool qkvBias, bool mlpBias,
                        double lnEps);
  torch::Tensor forward(const torch::Tensor& prototypes, const torch::Tensor& tokens);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  InpExtractorAttention attn{nullptr};
  InpMlp mlp{nullptr};
};
TORCH_MODULE(InpExtractorBlock);

// Tokens attend to the INPs: L2-normalised q and k, learnable per-head scale, ReLU, no softmax.
struct InpGuidedAttentionImpl : torch::nn::Module {
  InpGuidedAttentionImpl(int64_t dim, int64_t numHeads, bool qkvBias);
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& prototypes);
  int64_t numHeads;
  torch::Tensor learn_scale;
  torch::nn::Linear q{nullptr}, kv{nullptr}, proj{nullptr};
  // Training only: the smallest |cos(q, k)| of the last forward, i.e. how close a ReLU score
  // came to its kink. Below float32 rounding (~(head dim) x 6e-8) another summation order can
  // flip it, and with it the gradient: the trace tests read this to tell such a flip from a bug.
  double reluMargin = std::numeric_limits<double>::infinity();
};
TORCH_MODULE(InpGuidedAttention);

// y = attn(n1(x), n1(p)); x = y + mlp(n2(y)). No residual around the attention: the decoder
// must rebuild features from the prototypes alone, which is what makes anomalies stand out.
struct InpDecoderBlockImpl : torch::nn::Module {
  InpDecoderBlockImpl(int64_t dim, int64_t numHeads, double mlpRatio, bool qkvBias, bool mlpBias,
                      double lnEps);
  torch::Tensor forward(const torch::Tensor& tokens, const torch::Tensor& prototypes);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  InpGuidedAttention attn{nullptr};
  InpMlp mlp{nullptr};
};
TORCH_MODULE(InpDecoderBlock);

}  // namespace inpformer
