// model.h - what the bindings drive: a network on a device at a precision, with inference
// (features, anomaly map, score) and a trainer. Knows nothing of Node.
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "inp_former.h"
#include "packed_weights.h"
#include "trainer.h"

namespace inpformer {

struct InferenceResult {
  torch::Tensor scores;       // [B] float32, CPU
  torch::Tensor anomalyMaps;  // [B, H, W] float32, CPU (blurred)
  // With features requested (float32, CPU):
  std::vector<torch::Tensor> encoderFeatures, decoderFeatures;  // per group [B, C, h, w]
  torch::Tensor prototypes;                                     // [B, M, C]
  torch::Tensor inpLoss;                                        // scalar
  torch::Tensor anomalyMapsRaw;                                 // [B, H, W] before the blur
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// A CPU batch's inference runs in chunks of whole images, so that its activations stay bounded:
// at most kCpuBatchChunkBytes in the widest one (a block's MLP hidden layer) unless one image
// alone needs more. A batch of 8 at 392 px peaked at 548 against 686 MiB run whole (ViT-S/14;
// ViT-B/14: 1,135 against 1,269; bench/batch-chunks.js) at the same speed, scores within 1e-6 (the products' last bits
// over fewer rows); on some hours a whole batch of 8 at 392 px ran 17-36% slower per image than
// single images, and the chunks avoid that. At 224 px a ViT-S batch of 8 (12.8 MB) stays whole:
// it is the fastest per image there (docs/benchmarks.md).
constexpr int64_t kCpuBatchChunkBytes = int64_t{13} << 20;

// The budget in bytes: kCpuBatchChunkBytes, or INP_FORMER_CPU_BATCH_MIB (MiB, fractions allowed;
// 0 runs every batch whole) read once.
int64_t cpuBatchChunkBytes();

// The chunks' sizes, in order: the whole batch when it fits budgetBytes (or the budget is 0),
// else as few chunks as fit it, as even as can be, at least one image each (8 images of which 3
// fit: 3, 3, 2; 7: 3, 2, 2).
std::vector<int64_t> batchChunks(const EncoderConfig& e, int64_t batch, int64_t height, int64_t width, int64_t budgetBytes);

class InpFormerModel {
 public:
  InpFormerModel(const InpFormerConfig& config, const RuntimeOptions& runtime);
  // Frees the network, then empties the tensor cache its blocks would otherwise go to.
  ~InpFormerModel();
  InpFormerModel(const InpFormerModel&) = delete;
  InpFormerModel& operator=(const InpFormerModel&) = delete;

  // Strict load of float tensors named as upstream's state_dict (CPU tensors, any float dtype).
  void loadWeights(const std::map<std::string, torch::Tensor>& tensors);
  // A load in parts, so that a checkpoint's bytes need not all be in memory beside the network:
  // checkWeights checks the whole state dict's names and shapes (strictly, as loadWeights), then
  // each copyWeights copies the part that has been read. The scope says whose parameters the
  // names are: the network's, or the encoder's alone (without the "encoder." prefix).
  enum class WeightScope { kNetwork, kEncoder };
  void checkWeights(const TensorShapes& shapes, WeightScope scope);
  void copyWeights(const std::map<std::string, torch::Tensor>& tensors, WeightScope scope);
  // The reference initialisation of the trainable part (fresh models).
  void initTrainable(uint64_t seed) { net_->initTrainable(seed); }
  // Every parameter, upstream names and order, float32 CPU copies.
  NamedTensors stateDict() const;

  // images: [B, 3, H, W] float32 CPU, normalised. On the CPU a batch without features runs in
  // the chunks batchChunks(..., cpuBatchChunkBytes()) gives, one after the other, and their
  // results are joined.
  InferenceResult infer(const torch::Tensor& images, bool withFeatures);

  // Training. beginTraining builds the optimiser for a run of totalSteps; trainStep runs one.
  // A bfloat16 model trains float32 master weights, rounded back to bfloat16 by endTraining.
  void beginTraining(const TrainOptions& options);
  // keys name the batch's images for the encoder-feature cache (TrainOptions::featureCacheBytes).
  StepStats trainStep(const torch::Tensor& batch, const std::vector<int64_t>& keys = {});
  Trainer* trainer() { return trainer_.get(); }
  // Frees what only training needs: the optimizer's moments and the gradients.
  void endTraining();

  // True when this model's inference never reaches the system BLAS, so it needs no turn on
  // the compute lock (executor.h): oneDNN's float32 products, and bfloat16 ones only where
  // they run on oneDNN's fast kernels.
  bool inferenceAvoidsBlas() const;

  // Bytes and count of the linear weights now held packed (0 before the first inference, after
  // stateDict or training, and for models whose weights are never packed).
  int64_t packedWeightBytes() const { return packedWeights_ ? packedWeights_->packedBytes() : 0; }
  size_t packedWeightCount() const { return packedWeights_ ? packedWeights_->packedCount() : 0; }

  const InpFormerConfig& config() const { return config_; }
  torch::Device device() const { return device_; }
  torch::ScalarType dtype() const { return dtype_; }

 private:
  torch::Tensor toModelInput(const torch::Tensor& images) const;
  // infer() for a batch run whole.
  InferenceResult inferBatch(const torch::Tensor& images, bool withFeatures);
  // The module whose parameters a scope's names address.
  torch::nn::Module& weightsOf(WeightScope scope);
  // Every packed weight's plain values back in the network (packed_weights.h): before
  // anything but inference reads or writes the weights.
  void unpackWeights() const;
  InpFormerConfig config_;
  torch::Device device_;
  // A bfloat16 model on the CPU keeps only its linear layers' weights in bfloat16 and runs
  // float32 activations with bfloat16 products (BFloat16Products): libtorch's bfloat16
  // element-wise CPU kernels made a whole-bfloat16 ViT-S slower (17.8 against 21.4 images/s,
  // batch 8, Zen 4). On CUDA the whole network is bfloat16.
  bool lowPrecisionInProductsOnly() const { return device_.is_cpu(); }
  torch::ScalarType dtype_;  // the model's precision; the trainable part is float32 while a bfloat16 model trains
  InpFormerNet net_{nullptr};
  std::unique_ptr<Trainer> trainer_;
  // A float32 CPU model's linear weights, packed for oneDNN at their first inference (none
  // without oneDNN's packed API). Dropped and rebuilt freely: a cache of the weights.
  std::unique_ptr<PackedLinearWeights> packedWeights_;
  torch::Tensor blurKernel_;
};

// Parse "cpu" | "cuda" | "cuda:N" | "auto" (cuda when available, else cpu).
torch::Device parseDevice(const std::string& name);

struct RuntimeInfo {
  std::string torchVersion;
  bool cudaAvailable = false;
  int cudaDeviceCount = 0;
  int threads = 0;          // what model worker threads use
  int availableCores = 0;
  bool bf16MatmulAvailable = false;
  bool cpuBf16Products = false;  // the CPU's bfloat16 products are fast: avx512_bf16 or AMX, through oneDNN
  bool cpuPackedWeights = false;  // float32 models' linear weights are packed for oneDNN (packed_weights.h)
  std::string parallelInfo;
  // OpenBLAS's own report (empty under another BLAS): the kernel set it chose for this CPU
  // decides float32 summation orders, hence bit-level results (docs/parity.md).
  std::string openblasCore, openblasConfig;
};
RuntimeInfo runtimeInfo();

}  // namespace inpformer
