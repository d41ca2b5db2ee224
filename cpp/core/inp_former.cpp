// inp_former.cpp - INP-Former forward pass and state-dict loading.
#include "inp_former.h"

#include <cmath>
#include <sstream>

#include "cpu_gemm.h"
#include "errors.h"

namespace inpformer {
namespace {

std::string shapeString(const torch::IntArrayRef& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

// upstream fuse_feature: torch.stack(list, 1).mean(1). The mean of a stack reduces over the
// stacked dimension in order, one addition after another, then divides: the same sum added up
// here without the stacked copy (8 x [B, N, C] at once; bit-identical, checked by the parity tests).
torch::Tensor fuse(const std::vector<torch::Tensor>& feats, const std::vector<int64_t>& idx) {
  torch::Tensor sum = feats[static_cast<size_t>(idx[0])];
  for (size_t i = 1; i < idx.size(); ++i) sum = sum + feats[static_cast<size_t>(idx[i])];
  return sum / static_cast<double>(idx.size());
}

// [B, N, C] patch tokens -> [B, C, side, side], token n at row n / side, column n % side.
torch::Tensor toFeatureMap(const torch::Tensor& t, int64_t side) {
  return t.permute({0, 2, 1}).reshape({t.size(0), -1, side, side}).contiguous();
}

}  // namespace

void validateConfig(const InpFormerConfig& cfg) {
  auto bad = [](const std::string& m) { throw CoreError(codes::kInvalidArgument, m); };
  if (cfg.targetLayers.empty()) bad("targetLayers must not be empty");
  for (auto l : cfg.targetLayers)
    if (l < 0 || l >= cfg.encoder.depth)
      bad("targetLayers has layer " + std::to_string(l) + " but the encoder has " +
          std::to_string(cfg.encoder.depth) + " blocks");
  auto checkGroups = [&](const std::vector<std::vector<int64_t>>& groups, int64_t n, const char* name) {
    if (groups.empty()) bad(std::string(name) + " must have at least one group");
    for (auto& g : groups) {
      if (g.empty()) bad(std::string(name) + " has an empty group");
      for (auto i : g)
        if (i < 0 || i >= n)
          bad(std::string(name) + " refers to feature " + std::to_string(i) + " of " + std::to_string(n));
    }
  };
  checkGroups(cfg.fuseLayerEncoder, static_cast<int64_t>(cfg.targetLayers.size()), "fuseLayerEncoder");
  checkGroups(cfg.fuseLayerDecoder, cfg.decoderDepth, "fuseLayerDecoder");
  if (cfg.fuseLayerEncoder.size() != cfg.fuseLayerDecoder.size())
    bad("fuseLayerEncoder and fuseLayerDecoder must have the same number of groups");
  if (cfg.inpNum < 1) bad("inpNum must be at least 1");
  if (cfg.numHeads < 1 || cfg.encoder.embedDim % cfg.numHeads != 0)
    bad("numHeads " + std::to_string(cfg.numHeads) + " does not divide embedDim " +
        std::to_string(cfg.encoder.embedDim));
  if (cfg.encoder.numHeads < 1 || cfg.encoder.embedDim % cfg.encoder.numHeads != 0)
    bad("encoder numHeads " + std::to_string(cfg.encoder.numHeads) + " does not divide embedDim " +
        std::to_string(cfg.encoder.embedDim));
}

InpFormerNetImpl::InpFormerNetImpl(const InpFormerConfig& cfg) : cfg_(cfg) {
  validateConfig(cfg);
  const auto D = cfg.encoder.embedDim;
  // Registration order = upstream state_dict order: own parameter first, then children.
  prototype_token = register_parameter("prototype_token", torch::zeros({cfg.inpNum, D}));
  encoder = register_module("encoder", DinoVisionTransformer(cfg.encoder));
  bottleneck = register_module("bottleneck", torch::nn::ModuleList());
  bottleneck->push_back(InpMlp(D, static_cast<int64_t>(D * cfg.mlpRatio), /*bias=*/true));
  aggregation = register_module("aggregation", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.extractorDepth; ++i)
    aggregation->push_back(InpExtractorBlock(D, cfg.numHeads, cfg.mlpRatio, cfg.qkvBias, cfg.mlpBias, cfg.inpLnEps));
  decoder = register_module("decoder", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg.decoderDepth; ++i)
    decoder->push_back(InpDecoderBlock(D, cfg.numHeads, cfg.mlpRatio, cfg.qkvBias, cfg.mlpBias, cfg.inpLnEps));
  for (auto& p : encoder->parameters()) p.set_requires_grad(false);
}

NetworkOutput InpFormerNetImpl::forward(const torch::Tensor& images, bool withCoherence, int encoderThreads) {
  return forward(encode(images, encoderThreads), withCoherence);
}

torch::Tensor InpFormerNetImpl::patchMap(const torch::Tensor& mean) const {
  const int64_t skip = cfg_.removeClassToken ? 0 : 1 + cfg_.encoder.numRegisterTokens;
  const auto side = static_cast<int64_t>(std::sqrt(static_cast<double>(mean.size(1) - skip)));
  return toFeatureMap(mean.slice(1, skip), side);
}

EncodedImages InpFormerNetImpl::encode(const torch::Tensor& images, int encoderThreads) {
  const int64_t skip = 1 + cfg_.encoder.numRegisterTokens;
  const int64_t lastLayer = *std::max_element(cfg_.targetLayers.begin(), cfg_.targetLayers.end());
  const auto layers = static_cast<int64_t>(cfg_.targetLayers.size());
  // The encoder's means (the extractor's query over every target layer, then each group's) are
  // summed as the layers come, in fuse()'s order, so they are bit-identical to it: a layer is kept
  // only until every sum has taken it (in upstream's layout, not at all), where fuse() would need
  // all 8 layers' tokens at once.
  std::vector<std::vector<int64_t>> sums{std::vector<int64_t>(static_cast<size_t>(layers))};
  for (int64_t i = 0; i < layers; ++i) sums[0][static_cast<size_t>(i)] = i;
  for (const auto& group : cfg_.fuseLayerEncoder) sums.push_back(group);
  std::vector<torch::Tensor> summed(sums.size());
  std::vector<size_t> taken(sums.size(), 0);   // how many of its layers each sum holds
  std::vector<int64_t> usesLeft(static_cast<size_t>(layers), 0);
  for (const auto& order : sums)
    for (auto i : order) ++usesLeft[static_cast<size_t>(i)];
  std::vector<torch::Tensor> arrived(static_cast<size_t>(layers));
  {
    torch::NoGradGuard noGrad;
    OpenMpThreadCount threads(encoderThreads);
    encoder->forEachBlockOutput(images, lastLayer, [&](int64_t block, const torch::Tensor& tokens) {
      for (int64_t i = 0; i < layers; ++i) {
        if (cfg_.targetLayers[static_cast<size_t>(i)] != block) continue;
        auto t = tokens.to(prototype_token.scalar_type());
        arrived[static_cast<size_t>(i)] = cfg_.removeClassToken ? t.slice(1, skip) : t;
      }
      for (size_t s = 0; s < sums.size(); ++s) {
        for (; taken[s] < sums[s].size(); ++taken[s]) {
          const auto i = static_cast<size_t>(sums[s][taken[s]]);
          if (!arrived[i].defined()) break;
          summed[s] = summed[s].defined() ? summed[s] + arrived[i] : arrived[i];
          if (--usesLeft[i] == 0) arrived[i] = torch::Tensor();
        }
      }
    });
  }
  const auto meanOf = [&](size_t s) { return summed[s] / static_cast<double>(sums[s].size()); };
  EncodedImages encoded{meanOf(0), {}};
  for (size_t g = 1; g < sums.size(); ++g) encoded.groups.push_back(patchMap(meanOf(g)));
  return encoded;
}

NetworkOutput InpFormerNetImpl::forward(const EncodedImages& encoded, bool withCoherence) {
  auto x = encoded.query;
  NetworkOutput out;
  out.en = encoded.groups;
  const auto B = x.size(0);
  auto prototypes = prototype_token;
  for (const auto& blk : *aggregation)
    prototypes = blk->as<InpExtractorBlockImpl>()->forward(prototypes.unsqueeze(0).repeat({B, 1, 1}), x);
  // [B, N, M, C] at once: only training and the features' report need it
  if (withCoherence) out.coherence = inpCoherenceLoss(x, prototypes);

  for (const auto& blk : *bottleneck) x = blk->as<InpMlpImpl>()->forward(x);
  // Decoder groups index the blocks' outputs last first (upstream reverses its list): output i is
  // block depth-1-i's. A group is fused once its last block has run, and an output is dropped once
  // every group holding it is fused: the group of the first blocks is done, and their tokens
  // freed, before the last blocks run.
  const auto depth = static_cast<int64_t>(decoder->size());
  const auto groups = cfg_.fuseLayerDecoder.size();
  std::vector<int64_t> completedBy(groups);                      // the block whose output completes group g
  std::vector<int64_t> neededUntil(static_cast<size_t>(depth), -1);  // the last block after which output i is read
  for (size_t g = 0; g < groups; ++g) {
    const auto& group = cfg_.fuseLayerDecoder[g];
    completedBy[g] = depth - 1 - *std::min_element(group.begin(), group.end());
    for (auto i : group) neededUntil[static_cast<size_t>(i)] = std::max(neededUntil[static_cast<size_t>(i)], completedBy[g]);
  }
  std::vector<torch::Tensor> deList(static_cast<size_t>(depth));  // upstream's (reversed) order
  out.de.resize(groups);
  for (int64_t b = 0; b < depth; ++b) {
    auto block = decoder->ptr<InpDecoderBlockImpl>(b);
    x = block->forward(x, prototypes);
    deList[static_cast<size_t>(depth - 1 - b)] = x;
    out.reluMargin = std::min(out.reluMargin, block->attn->reluMargin);
    for (size_t g = 0; g < groups; ++g)
      if (completedBy[g] == b) out.de[g] = patchMap(fuse(deList, cfg_.fuseLayerDecoder[g]));
    for (int64_t i = 0; i < depth; ++i)
      if (neededUntil[static_cast<size_t>(i)] <= b) deList[static_cast<size_t>(i)] = torch::Tensor();
  }
  out.prototypes = prototypes;
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> InpFormerNetImpl::trainableParameters() {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto* mod : {&bottleneck, &decoder, &aggregation}) {
    const auto prefix = mod == &bottleneck ? "bottleneck." : mod == &decoder ? "decoder." : "aggregation.";
    for (auto& kv : (*mod)->named_parameters()) out.emplace_back(prefix + kv.key(), kv.value());
  }
  out.emplace_back("prototype_token", prototype_token);
  return out;
}

void InpFormerNetImpl::castParameters(torch::ScalarType dtype, Part part, bool linearWeightsOnly) {
  std::vector<torch::nn::Module*> roots;
  if (part == Part::Whole) roots.push_back(this);
  else roots = {bottleneck.get(), aggregation.get(), decoder.get()};
  torch::NoGradGuard noGrad;
  for (auto* root : roots) {
    if (!linearWeightsOnly) {
      root->to(dtype);
      continue;
    }
    for (auto& sub : root->modules(/*include_self=*/false))
      if (auto* lin = sub->as<torch::nn::LinearImpl>()) lin->weight.set_data(lin->weight.to(dtype));
  }
  if (part == Part::Trainable && !linearWeightsOnly) prototype_token.set_data(prototype_token.to(dtype));
}

void InpFormerNetImpl::initTrainable(uint64_t seed) {
  torch::NoGradGuard noGrad;
  torch::manual_seed(seed);
  for (auto* mod : {&bottleneck, &aggregation, &decoder}) {
    for (auto& sub : (*mod)->modules(/*include_self=*/false)) {
      if (auto* lin = sub->as<torch::nn::LinearImpl>()) {
        // timm trunc_normal_(std=.01): inverse-CDF sampling in [a, b] = [-0.03, 0.03].
        auto& w = lin->weight;
        const double a = -0.03, b = 0.03, std = 0.01;
        auto cdf = [](double v) { return (1. + std::erf(v / std::sqrt(2.))) / 2.; };
        const double l = cdf(a / std), u = cdf(b / std);
        w.uniform_(2 * l - 1, 2 * u - 1).erfinv_().mul_(std * std::sqrt(2.)).clamp_(a, b);
        if (lin->bias.defined()) lin->bias.zero_();
      } else if (auto* ln = sub->as<torch::nn::LayerNormImpl>()) {
        ln->weight.fill_(1.0);
        ln->bias.zero_();
      } else if (auto* att = sub->as<InpGuidedAttentionImpl>()) {
        att->learn_scale.fill_(1.0);
      }
    }
  }
  prototype_token.normal_();
}

namespace {

CoreError unexpectedKey(const std::string& name, at::IntArrayRef shape) {
  return CoreError(codes::kCheckpoint,
                   "unexpected key '" + name + "' with shape " + shapeString(shape) + ": the network has no such parameter");
}

CoreError shapeMismatch(const std::string& name, at::IntArrayRef given, at::IntArrayRef expected) {
  return CoreError(codes::kCheckpoint, "shape mismatch for '" + name + "': the checkpoint has " + shapeString(given) +
                                           ", the network expects " + shapeString(expected));
}

}  // namespace

void checkStateDict(const torch::nn::Module& module, const TensorShapes& shapes) {
  const auto params = module.named_parameters(/*recurse=*/true);
  for (const auto& kv : shapes) {
    const auto* p = params.find(kv.first);
    if (p == nullptr) throw unexpectedKey(kv.first, kv.second);
    if (p->sizes() != at::IntArrayRef(kv.second)) throw shapeMismatch(kv.first, kv.second, p->sizes());
  }
  for (const auto& kv : params) {
    if (!shapes.count(kv.key()))
      throw CoreError(codes::kCheckpoint, "missing key '" + kv.key() + "' (shape " +
                                              shapeString(kv.value().sizes()) + ") in the checkpoint");
  }
}

void copyIntoParameters(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard noGrad;
  auto params = module.named_parameters(/*recurse=*/true);
  for (const auto& kv : tensors) {
    auto* p = params.find(kv.first);
    if (p == nullptr) throw unexpectedKey(kv.first, kv.second.sizes());
    if (p->sizes() != kv.second.sizes()) throw shapeMismatch(kv.first, kv.second.sizes(), p->sizes());
    p->copy_(kv.second);
  }
}

void loadStateDict(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors) {
  TensorShapes shapes;
  for (const auto& kv : tensors) shapes.emplace(kv.first, kv.second.sizes().vec());
  checkStateDict(module, shapes);
  copyIntoParameters(module, tensors);
}

}  // namespace inpformer
