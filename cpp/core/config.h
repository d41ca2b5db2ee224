// config.h - architecture and runtime options of an INP-Former network.
// Plain data: filled by the N-API layer from the JS options, or by tests.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace inpformer {

// Every field is set by whoever builds the network: the N-API layer from the complete record
// lib/model/options.ts and lib/model/architecture.ts resolve (cpp/napi/convert.cpp requires each key), or a
// test. No user-facing default lives here: the zeros below only keep the structs initialised.

// A DINOv2 ViT. Sizes come from the weights (lib/model/architecture.ts); numHeads cannot be read
// from shapes and comes from the decoder's learn_scale or the DINOv2 head dim of 64.
struct EncoderConfig {
  int64_t embedDim = 0;
  int64_t depth = 0;
  int64_t numHeads = 0;
  int64_t numRegisterTokens = 0;
  int64_t patchSize = 0;
  int64_t posGridSize = 0;       // the position table is posGridSize^2 patches (+ cls)
  int64_t mlpHiddenDim = 0;      // fc1 width (or the SwiGLU hidden width)
  bool swiglu = false;           // giant: mlp.w12 / mlp.w3 instead of fc1 / fc2
  double lnEps = 0;
  double interpolateOffset = 0;
};

struct InpFormerConfig {
  EncoderConfig encoder;
  std::vector<int64_t> targetLayers;
  std::vector<std::vector<int64_t>> fuseLayerEncoder;
  std::vector<std::vector<int64_t>> fuseLayerDecoder;
  bool removeClassToken = false;
  int64_t inpNum = 0;
  int64_t numHeads = 0;          // heads of the extractor and decoder blocks
  int64_t decoderDepth = 0;
  int64_t extractorDepth = 0;
  double inpLnEps = 0;
  double mlpRatio = 0;
  bool qkvBias = false;
  // Upstream's extractor/decoder MLPs have biases; anomalib's have none.
  bool mlpBias = false;
};

struct RuntimeOptions {
  std::string device;            // cpu | cuda | cuda:N | auto
  std::string precision;         // float32 | bfloat16
  int threads = 0;
};

}  // namespace inpformer
