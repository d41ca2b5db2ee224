// upstream_config.h - upstream INP-Former's settings around a DINOv2 encoder, for the programs
// that build networks without Node (the core test, bench/profile.cpp). The package's own
// defaults live in lib/model/options.ts; these mirror reference-a's recipe.
#pragma once
#include "core/config.h"

namespace inpformer {

inline InpFormerConfig upstreamConfig(int64_t dim, int64_t depth, int64_t heads, int64_t registers) {
  InpFormerConfig c;
  c.encoder.embedDim = dim;
  c.encoder.depth = depth;
  c.encoder.numHeads = heads;
  c.encoder.numRegisterTokens = registers;
  c.encoder.patchSize = 14;
  c.encoder.posGridSize = 37;
  c.encoder.mlpHiddenDim = 4 * dim;
  c.encoder.lnEps = 1e-6;
  c.encoder.interpolateOffset = 0.1;
  c.targetLayers = depth == 24 ? std::vector<int64_t>{4, 6, 8, 10, 12, 14, 16, 18}
                               : std::vector<int64_t>{2, 3, 4, 5, 6, 7, 8, 9};
  c.fuseLayerEncoder = {{0, 1, 2, 3}, {4, 5, 6, 7}};
  c.fuseLayerDecoder = {{0, 1, 2, 3}, {4, 5, 6, 7}};
  c.removeClassToken = true;
  c.inpNum = 6;
  c.numHeads = heads;
  c.decoderDepth = 8;
  c.extractorDepth = 1;
  c.inpLnEps = 1e-8;
  c.mlpRatio = 4;
  c.qkvBias = true;
  c.mlpBias = true;
  return c;
}

}  // namespace inpformer
