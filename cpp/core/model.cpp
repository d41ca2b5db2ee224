// model.cpp - InpFormerModel: device/precision handling around the network, inference, training.
#include "model.h"

#include <dlfcn.h>

#include <ATen/Parallel.h>
#include <torch/version.h>

#include <cstdlib>
#include <cstring>

#include "anomaly_map.h"
#include "cpu_gemm.h"
#include "errors.h"
#include "executor.h"
#include "tensor_memory.h"

namespace inpformer {

torch::Device parseDevice(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  torch::Device d(torch::kCPU);
  try {
    d = torch::Device(name);
  } catch (const c10::Error&) {
    throw CoreError(codes::kInvalidArgument, "unknown device '" + name + "' (use cpu, cuda, cuda:N or auto)");
  }
  if (d.is_cuda()) {
    if (!torch::cuda::is_available())
      throw CoreError(codes::kDevice, "device '" + name + "' was asked for but this libtorch has no usable CUDA (" +
                                          "build against a CUDA libtorch with LIBTORCH=..., see docs/libtorch.md)");
    const auto count = static_cast<int>(torch::cuda::device_count());
    if (d.has_index() && d.index() >= count)
      throw CoreError(codes::kDevice, "device '" + name + "' does not exist: " + std::to_string(count) + " CUDA device(s)");
  } else if (!d.is_cpu()) {
    throw CoreError(codes::kInvalidArgument, "unsupported device '" + name + "'");
  }
  return d;
}

static torch::ScalarType parsePrecision(const std::string& p) {
  if (p == "float32") return torch::kFloat;
  if (p == "bfloat16") return torch::kBFloat16;
  throw CoreError(codes::kInvalidArgument, "unknown precision '" + p + "' (use float32 or bfloat16)");
}

InpFormerModel::InpFormerModel(const InpFormerConfig& config, const RuntimeOptions& runtime)
    : config_(config), device_(parseDevice(runtime.device)), dtype_(parsePrecision(runtime.precision)) {
  net_ = InpFormerNet(config);
  net_->to(device_);
  if (dtype_ != torch::kFloat) {
    TensorCacheBypass once;  // the float32 weights are not allocated again
    net_->castParameters(dtype_, InpFormerNetImpl::Part::Whole, lowPrecisionInProductsOnly());
  }
  net_->eval();
  blurKernel_ = gaussianKernel2d(5, 4.0, torch::TensorOptions().device(device_));
  if (device_.is_cpu() && dtype_ == torch::kFloat && packedProductsAvailable()) {
    std::vector<torch::Tensor> weights;
    for (auto& sub : net_->modules(/*include_self=*/false))
      if (auto* lin = sub->as<torch::nn::LinearImpl>()) weights.push_back(lin->weight);
    packedWeights_ = std::make_unique<PackedLinearWeights>(weights, runtime.threads > 0 ? runtime.threads : availableCores());
  }
}

InpFormerModel::~InpFormerModel() {
  trainer_.reset();
  packedWeights_.reset();
  net_ = InpFormerNet(nullptr);
  blurKernel_ = torch::Tensor();
  releaseCachedTensorBlocks();
}

void InpFormerModel::unpackWeights() const {
  if (packedWeights_) packedWeights_->unpackAll();
}

void InpFormerModel::loadWeights(const std::map<std::string, torch::Tensor>& tensors) {
  unpackWeights();
  loadStateDict(*net_, tensors);
}

torch::nn::Module& InpFormerModel::weightsOf(WeightScope scope) {
  if (scope == WeightScope::kEncoder) return *net_->encoder;
  return *net_;
}

void InpFormerModel::checkWeights(const TensorShapes& shapes, WeightScope scope) {
  unpackWeights();
  checkStateDict(weightsOf(scope), shapes);
}

void InpFormerModel::copyWeights(const std::map<std::string, torch::Tensor>& tensors, WeightScope scope) {
  unpackWeights();
  copyIntoParameters(weightsOf(scope), tensors);
}

NamedTensors InpFormerModel::stateDict() const {
  unpackWeights();
  NamedTensors out;
  for (const auto& kv : net_->named_parameters(true))
    out.emplace_back(kv.key(), kv.value().detach().to(torch::kCPU, torch::kFloat).contiguous());
  return out;
}

torch::Tensor InpFormerModel::toModelInput(const torch::Tensor& images) const {
  if (images.dim() != 4 || images.size(1) != 3)
    throw CoreError(codes::kInvalidArgument, "images must have shape [B, 3, H, W]");
  return images.to(device_, lowPrecisionInProductsOnly() ? torch::kFloat : dtype_);
}

namespace {

// Below this many multiply-adds in its widest product (an MLP's first layer over every token of
// the batch), a whole inference runs on one thread: each op's work is then too small to repay
// waking a second thread. A 64-wide 10-block model, 112 px, batch 8 (8.5M) ran 23-25 ms on one
// thread against 29-38 on two, taking turns with other models (bench/busy-neighbour.js); 128-wide
// at batch 8 (34M) and wider gain from two.
constexpr int64_t kSmallInference = int64_t{1} << 24;

int64_t tokensPerImage(const EncoderConfig& e, int64_t height, int64_t width) {
  return (height / e.patchSize) * (width / e.patchSize) + 1 + e.numRegisterTokens;
}

int64_t widestProduct(const EncoderConfig& e, const torch::Tensor& images) {
  if (images.dim() != 4) return 0;  // refused by toModelInput
  return images.size(0) * tokensPerImage(e, images.size(2), images.size(3)) * e.embedDim * e.mlpHiddenDim;
}

}  // namespace

int64_t cpuBatchChunkBytes() {
  static const int64_t bytes = [] {
    const char* mib = std::getenv("INP_FORMER_CPU_BATCH_MIB");
    char* end = nullptr;
    const double value = mib != nullptr ? std::strtod(mib, &end) : -1.0;
    if (mib == nullptr || end == mib || *end != '\0' || !(value >= 0.0) || value > 1e6) return kCpuBatchChunkBytes;
    return static_cast<int64_t>(value * 1048576.0);
  }();
  return bytes;
}

std::vector<int64_t> batchChunks(const EncoderConfig& e, int64_t batch, int64_t height, int64_t width, int64_t budgetBytes) {
  const auto perImage = std::max<int64_t>(1, tokensPerImage(e, height, width) * e.mlpHiddenDim) * static_cast<int64_t>(sizeof(float));
  if (budgetBytes <= 0 || batch <= 1 || perImage * batch <= budgetBytes) return {batch};
  const auto most = std::max<int64_t>(1, budgetBytes / perImage);
  const auto count = (batch + most - 1) / most;
  std::vector<int64_t> sizes;
  for (int64_t i = 0; i < count; ++i) sizes.push_back(batch / count + (i < batch % count ? 1 : 0));
  return sizes;
}

InferenceResult InpFormerModel::infer(const torch::Tensor& images, bool withFeatures) {
  // The features report's coherence loss is a mean over the whole batch: run that whole.
  if (images.dim() != 4 || !device_.is_cpu() || withFeatures) return inferBatch(images, withFeatures);
  const auto sizes = batchChunks(config_.encoder, images.size(0), images.size(2), images.size(3), cpuBatchChunkBytes());
  if (sizes.size() <= 1) return inferBatch(images, withFeatures);
  std::vector<torch::Tensor> scores, maps;
  int64_t first = 0;
  for (const auto count : sizes) {
    auto part = inferBatch(images.narrow(0, first, count), false);
    first += count;
    scores.push_back(std::move(part.scores));
    maps.push_back(std::move(part.anomalyMaps));
  }
  InferenceResult r;
  r.scores = torch::cat(scores);
  r.anomalyMaps = torch::cat(maps);
  return r;
}

InferenceResult InpFormerModel::inferBatch(const torch::Tensor& images, bool withFeatures) {
  // no autograd bookkeeping at all (version counters, view tracking), not just no graph
  c10::InferenceMode inference;
  OpenMpThreadCap smallJob(device_.is_cpu() && widestProduct(config_.encoder, images) < kSmallInference ? 1 : 0);
  BFloat16Products products(dtype_ == torch::kBFloat16);
  // packed weights only while no training runs: its steps change the trainable ones
  ActivePackedWeights packed(trainer_ ? nullptr : packedWeights_.get());
  net_->eval();
  auto out = net_->forward(toModelInput(images), /*withCoherence=*/withFeatures);
  const auto H = images.size(2), W = images.size(3);
  // Maps and scores in float32 whatever the network's precision.
  std::vector<torch::Tensor> en, de;
  for (auto& t : out.en) en.push_back(t.to(torch::kFloat));
  for (auto& t : out.de) de.push_back(t.to(torch::kFloat));
  auto raw = anomalyMapRaw(en, de, H, W);
  auto blurred = gaussianBlur(raw, blurKernel_);
  InferenceResult r;
  r.scores = topRatioScore(blurred, 0.01).to(torch::kCPU).contiguous();
  r.anomalyMaps = blurred.squeeze(1).to(torch::kCPU).contiguous();
  if (withFeatures) {
    for (auto& t : en) r.encoderFeatures.push_back(t.to(torch::kCPU).contiguous());
    for (auto& t : de) r.decoderFeatures.push_back(t.to(torch::kCPU).contiguous());
    r.prototypes = out.prototypes.to(torch::kCPU, torch::kFloat).contiguous();
    r.inpLoss = out.coherence.loss.to(torch::kCPU, torch::kFloat);
    r.anomalyMapsRaw = raw.squeeze(1).to(torch::kCPU).contiguous();
  }
  return r;
}

void InpFormerModel::beginTraining(const TrainOptions& options) {
  unpackWeights();
  // A bfloat16 model trains float32 master weights (bfloat16 widens without loss) behind its
  // encoder; endTraining rounds them back.
  if (dtype_ != torch::kFloat) net_->castParameters(torch::kFloat, InpFormerNetImpl::Part::Trainable, false);
  trainer_ = std::make_unique<Trainer>(net_, options);
}

void InpFormerModel::endTraining() {
  // Moments (3x the trainable weights, with amsgrad) and gradients (1x) would otherwise stay
  // for the model's lifetime.
  if (trainer_) {
    for (auto& kv : net_->trainableParameters()) {
      kv.second.mutable_grad().reset();
      kv.second.set_requires_grad(false);
    }
  }
  trainer_.reset();
  if (dtype_ != torch::kFloat) net_->castParameters(dtype_, InpFormerNetImpl::Part::Trainable, lowPrecisionInProductsOnly());
  net_->eval();
  releaseCachedTensorBlocks();  // training's activations outsize inference's: do not keep them
}

StepStats InpFormerModel::trainStep(const torch::Tensor& batch, const std::vector<int64_t>& keys) {
  if (!trainer_) throw CoreError(codes::kInvalidArgument, "beginTraining was not called");
  return trainer_->step(toModelInput(batch), keys);
}

bool InpFormerModel::inferenceAvoidsBlas() const {
  return inpformer::inferenceAvoidsBlas() && (dtype_ == torch::kFloat || !device_.is_cpu() || cpuBf16ProductsFast());
}

RuntimeInfo runtimeInfo() {
  RuntimeInfo info;
  info.torchVersion = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                      std::to_string(TORCH_VERSION_PATCH);
  info.cudaAvailable = torch::cuda::is_available();
  info.cudaDeviceCount = info.cudaAvailable ? static_cast<int>(torch::cuda::device_count()) : 0;
  info.availableCores = availableCores();
  info.threads = info.availableCores;
  info.cpuBf16Products = cpuBf16ProductsFast();
  info.bf16MatmulAvailable = info.cudaAvailable || info.cpuBf16Products;
  info.cpuPackedWeights = packedProductsAvailable();
  info.parallelInfo = at::get_parallel_info();
  // Looked up, not linked: libtorch may sit on another BLAS.
  using Report = char* (*)();
  if (auto core = reinterpret_cast<Report>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) info.openblasCore = core();
  if (auto config = reinterpret_cast<Report>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) info.openblasConfig = config();
  return info;
}

}  // namespace inpformer
