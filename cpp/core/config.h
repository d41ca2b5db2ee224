// config.h - architecture and runtime options of an INP-Former network.
// Plain data: filled by the N-API layer from the JS options, or by tests.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace inpformer {

// A DINOv2 ViT. Sizes come from the weights (see lib/model/architecture.ts); numHeads cannot be
// read from shapes and comes from the decoder's learn_scale or the DINOv2 head dim of 64.
struct EncoderConfig {
  int64_t embedDim = 384;
  int64_t depth = 12;
  int64_t numHeads = 6;
  int64_t numRegisterTokens = 0;
  int64_t patchSize = 14;
  int64_t posGridSize = 37;      // the position table is posGridSize^2 patches (+ cls)
  int64_t mlpHiddenDim = 1536;   // fc1 width (or the SwiGLU hidden width)
  bool swiglu = false;           // giant: mlp.w12 / mlp.w3 instead of fc1 / fc2
  double lnEps = 1e-6;
  double interpolateOffset = 0.1;
};

struct InpFormerConfig {
  EncoderConfig encoder;
  std::vector<int64_t> targetLayers{2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<std::vector<int64_t>> fuseLayerEncoder{{0, 1, 2, 3}, {4, 5, 6, 7}};
  std::vector<std::vector<int64_t>> fuseLayerDecoder{{0, 1, 2, 3}, {4, 5, 6, 7}};
  bool removeClassToken = true;
  int64_t inpNum = 6;
  int64_t numHeads = 6;          // heads of the extractor and decoder blocks
  int64_t decoderDepth = 8;
  int64_t extractorDepth = 1;
  double inpLnEps = 1e-8;
  double mlpRatio = 4.0;
  bool qkvBias = true;
  // Upstream's extractor/decoder MLPs have biases; anomalib's have none.
  bool mlpBias = true;
};

struct RuntimeOptions {
  std::string device = "cpu";    // cpu | cuda | cuda:N | auto
  std::string precision = "float32";  // float32 | bfloat16
  int threads = 0;               // 0: the cores this process may use
};

}  // namespace inpformer
