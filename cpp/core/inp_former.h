// inp_former.h - the INP-Former network: frozen DINOv2 encoder, INP Extractor, bottleneck,
// INP-guided decoder and layer-group fusion (upstream models/uad.py, INP_Former).
// Parameter names and order equal upstream's state_dict, so a state dict maps 1:1.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "config.h"
#include "inp_blocks.h"
#include "losses.h"
#include "vit_encoder.h"

namespace inpformer {

struct NetworkOutput {
  std::vector<torch::Tensor> en;  // per fuse group, [B, C, h, w]
  std::vector<torch::Tensor> de;  // per fuse group, [B, C, h, w]
  torch::Tensor prototypes;       // [B, M, C]: the INPs of each image
  InpCoherence coherence;         // INP coherence loss and its per-token parts, when asked for
  double reluMargin = std::numeric_limits<double>::infinity();  // training: min over decoder blocks
};

// What the frozen encoder gives the rest of the network for a batch of images.
struct EncodedImages {
  torch::Tensor query;              // [B, N, C]: the mean over the target layers (the extractor's query, the bottleneck's input)
  std::vector<torch::Tensor> groups;  // per fuse group, [B, C, h, w]: the encoder side of the loss and of the map
};

class InpFormerNetImpl : public torch::nn::Module {
 public:
  explicit InpFormerNetImpl(const InpFormerConfig& cfg);

  // images: [B, 3, H, W], normalised. The encoder always runs without autograd. The coherence
  // loss is left undefined without withCoherence (plain inference has no use for it).
  // encoderThreads > 0 runs the encoder on that many OpenMP threads whatever the caller's count
  // (training's exact mode runs the rest of its step on one, see trainer.cpp).
  NetworkOutput forward(const torch::Tensor& images, bool withCoherence = true, int encoderThreads = 0);
  // forward() in two halves: the frozen encoder, then everything after it.
  EncodedImages encode(const torch::Tensor& images, int encoderThreads = 0);
  NetworkOutput forward(const EncodedImages& encoded, bool withCoherence);

  // Parameters that training updates, in the reference optimiser's order:
  // bottleneck, decoder, extractor, INPs.
  std::vector<std::pair<std::string, torch::Tensor>> trainableParameters();
  // The reference's initialisation of the trainable part (trunc-normal 0.01 in +-0.03 Linear
  // weights, zero biases, unit LayerNorms, N(0,1) INPs, unit learn_scale), seeded.
  void initTrainable(uint64_t seed);
  // Casts parameters to dtype: those of the whole network or of its trainable part (a bfloat16
  // model trains float32 master weights), all of them or only the linear layers' weight
  // matrices (a bfloat16 model on the CPU: bfloat16 products on float32 activations, which ran
  // faster there than libtorch's bfloat16 element-wise kernels). forward() casts the encoder's
  // tokens to the trainable part's dtype.
  enum class Part { Whole, Trainable };
  void castParameters(torch::ScalarType dtype, Part part, bool linearWeightsOnly);

  const InpFormerConfig& config() const { return cfg_; }

  torch::Tensor prototype_token;
  DinoVisionTransformer encoder{nullptr};
  torch::nn::ModuleList bottleneck{nullptr}, aggregation{nullptr}, decoder{nullptr};

 private:
  // A [B, N(+class and register tokens), C] mean as a [B, C, side, side] map of the patch tokens.
  torch::Tensor patchMap(const torch::Tensor& mean) const;
  InpFormerConfig cfg_;
};
TORCH_MODULE(InpFormerNet);

// The names and shapes of a state dict, for a load whose tensors arrive in parts.
using TensorShapes = std::map<std::string, std::vector<int64_t>>;

// Strict check of a whole state dict's names and shapes, before any value is copied: every
// parameter must be named once with its exact shape; an unknown, missing or mis-shaped key
// throws a CoreError naming it.
void checkStateDict(const torch::nn::Module& module, const TensorShapes& shapes);

// Copies named float tensors into the parameters. An unknown or mis-shaped key throws; keys not
// given keep their values (a part of a load that checkStateDict has checked whole).
void copyIntoParameters(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors);

// checkStateDict, then copyIntoParameters: a strict load in one go.
void loadStateDict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors);

// Validate a configuration before building (layer indices in range, groups non-empty, ...).
void validateConfig(const InpFormerConfig& cfg);

}  // namespace inpformer
