// anomaly_map.cpp - anomaly map, Gaussian blur and image score (anomalib 277f9a165).
#include "anomaly_map.h"

#include "per_image.h"

namespace F = torch::nn::functional;

namespace inpformer {

torch::Tensor cosineDistanceGroups(const std::vector<torch::Tensor>& en, const std::vector<torch::Tensor>& de) {
  std::vector<torch::Tensor> maps;
  for (size_t i = 0; i < en.size(); ++i)
    maps.push_back(1.0 - F::cosine_similarity(en[i], de[i], F::CosineSimilarityFuncOptions().dim(1)));
  return torch::stack(maps, 1);
}

torch::Tensor anomalyMapRaw(const std::vector<torch::Tensor>& en, const std::vector<torch::Tensor>& de,
                            int64_t outH, int64_t outW) {
  std::vector<torch::Tensor> maps;
  for (size_t i = 0; i < en.size(); ++i) {
    auto m = (1.0 - F::cosine_similarity(en[i], de[i], F::CosineSimilarityFuncOptions().dim(1))).unsqueeze(1);
    maps.push_back(F::interpolate(m, F::InterpolateFuncOptions()
                                         .size(std::vector<int64_t>{outH, outW})
                                         .mode(torch::kBilinear)
                                         .align_corners(true)));
  }
  return torch::cat(maps, 1).mean(1, /*keepdim=*/true);
}

torch::Tensor gaussianKernel2d(int64_t kernelSize, double sigma, const torch::TensorOptions& options) {
  auto opts = options.dtype(torch::kFloat);
  auto x = torch::arange(kernelSize, opts) - static_cast<double>(kernelSize / 2);
  if (kernelSize % 2 == 0) x = x + 0.5;
  auto s = torch::full({1}, sigma, opts);
  auto gauss = torch::exp(-x.pow(2.0) / (2 * s.pow(2.0)));
  auto k1 = gauss / gauss.sum(-1, true);
  auto k2 = k1.unsqueeze(-1) * k1.unsqueeze(0);   // outer product
  k2 = k2 / k2.abs().sum(-1).sum(-1);              // kornia normalize_kernel2d
  return k2.view({1, 1, kernelSize, kernelSize}).to(options.dtype());
}

torch::Tensor gaussianBlur(const torch::Tensor& map, const torch::Tensor& kernel) {
  const auto pad = kernel.size(-1) / 2;
  auto padded = F::pad(map, F::PadFuncOptions({pad, pad, pad, pad}).mode(torch::kReflect));
  const auto weight = kernel.to(map.dtype());
  return convolvePerImage(padded, [&](const torch::Tensor& image) { return F::conv2d(image, weight); });
}

torch::Tensor topRatioScore(const torch::Tensor& map, double ratio) {
  auto flat = map.flatten(1);
  const auto k = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(flat.size(1)) * ratio));
  // the k largest in descending order, as anomalib's sort-and-slice gives them (so the mean adds
  // them in the same order), without sorting the other 99%: a full sort of a 224 x 224 map took
  // 4% of a ViT-S batch-1 inference
  auto largest = std::get<0>(torch::topk(flat, k, 1, /*largest=*/true, /*sorted=*/true));
  return largest.mean(1);
}

}  // namespace inpformer
