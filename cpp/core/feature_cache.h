// feature_cache.h - the frozen encoder's outputs of each training image, kept across epochs.
// The encoder does not train, and an image's outputs do not depend on the batch it is in
// (checked bit for bit by test/training.test.js), so from its second epoch a fit need not run
// the encoder on the images it holds: ~20% of a step (ViT-S/14, 224 and 392 px, 2 CPU cores).
#pragma once
#include <torch/torch.h>

#include <unordered_map>
#include <vector>

#include "inp_former.h"

namespace inpformer {

class EncoderFeatureCache {
 public:
  // Keeps images while their outputs fit in budgetBytes (0 keeps none).
  explicit EncoderFeatureCache(int64_t budgetBytes) : budget_(budgetBytes) {}

  // The encoder's outputs for batch [B, 3, H, W], whose images the caller names by keys (one
  // per image, the same key for the same pre-processed pixels throughout a fit): held images
  // come from the cache, the others go through net.encode as one batch and are kept while the
  // budget allows.
  // encodedImages, when given, is set to the number of images the encoder ran on.
  EncodedImages encode(InpFormerNetImpl& net, const torch::Tensor& batch, const std::vector<int64_t>& keys,
                       int encoderThreads, int64_t* encodedImages = nullptr);

  int64_t bytes() const { return bytes_; }
  size_t size() const { return entries_.size(); }

 private:
  // One image's outputs.
  struct Entry {
    torch::Tensor query;               // [N, C]
    std::vector<torch::Tensor> groups;  // [C, h, w] each
    // Row `row` of a batch's outputs (views into it).
    static Entry of(const EncodedImages& batch, int64_t row);
    // A copy of its own: a view would keep the whole batch's tensors alive.
    Entry clone() const;
    int64_t bytes() const;
  };
  int64_t budget_;
  int64_t bytes_ = 0;
  std::unordered_map<int64_t, Entry> entries_;
};

}  // namespace inpformer
