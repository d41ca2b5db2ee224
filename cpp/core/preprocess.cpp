// preprocess.cpp - torchvision ToTensor -> Resize(antialias) -> CenterCrop -> Normalize.
#include "preprocess.h"

#include <cmath>

#include "errors.h"

namespace F = torch::nn::functional;

namespace inpformer {

torch::Tensor preprocessImages(const std::vector<RawImage>& images, int64_t resize, int64_t crop) {
  if (crop > resize) throw CoreError(codes::kInvalidArgument, "cropSize must not exceed imageSize");
  const auto mean = torch::tensor({0.485, 0.456, 0.406}, torch::kFloat).view({1, 3, 1, 1});
  const auto std = torch::tensor({0.229, 0.224, 0.225}, torch::kFloat).view({1, 3, 1, 1});
  std::vector<torch::Tensor> out;
  for (const auto& img : images) {
    if (img.data == nullptr || img.height < 1 || img.width < 1)
      throw CoreError(codes::kInvalidArgument, "empty image");
    auto hwc = torch::from_blob(const_cast<uint8_t*>(img.data), {img.height, img.width, 3}, torch::kUInt8);
    // ToTensor divides by 255 (the fixture's convention).
    auto x = hwc.permute({2, 0, 1}).to(torch::kFloat).div(255).unsqueeze(0).contiguous();
    if (img.height != resize || img.width != resize) {
      x = F::interpolate(x, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{resize, resize})
                                .mode(torch::kBilinear)
                                .align_corners(false)
                                .antialias(true));
    }
    // torchvision center_crop: top = int(round((H - crop) / 2)).
    const auto top = static_cast<int64_t>(std::round((resize - crop) / 2.0));
    x = x.slice(2, top, top + crop).slice(3, top, top + crop);
    out.push_back((x - mean) / std);
  }
  return torch::cat(out, 0).contiguous();
}

}  // namespace inpformer
