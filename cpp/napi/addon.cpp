// addon.cpp - module entry: runtime(), preprocess(), fewShotViews() and the NativeModel class.
#include <napi.h>

#include <memory>

#include "async_job.h"
#include "convert.h"
#include "core/augment.h"
#include "core/cpu_gemm.h"
#include "core/errors.h"
#include "core/executor.h"
#include "core/model.h"
#include "core/preprocess.h"
#include "core/tensor_memory.h"
#include "model_binding.h"

namespace inpformer::napi {
namespace {

// Decoding happens in JS (sharp, libuv pool); resizing/normalising runs here, on a thread of
// its own so that data preparation overlaps a model's training or inference.
SerialExecutor& dataExecutor() {
  static SerialExecutor executor(1, /*exclusiveCompute=*/false);  // no matrix products
  return executor;
}

Napi::Value runtime(const Napi::CallbackInfo& info) {
  auto r = runtimeInfo();
  auto o = Napi::Object::New(info.Env());
  o.Set("torchVersion", r.torchVersion);
  o.Set("cudaAvailable", r.cudaAvailable);
  o.Set("cudaDeviceCount", r.cudaDeviceCount);
  o.Set("availableCores", r.availableCores);
  o.Set("bf16MatmulAvailable", r.bf16MatmulAvailable);
  o.Set("cpuBf16Products", r.cpuBf16Products);
  o.Set("cpuPackedWeights", r.cpuPackedWeights);
  o.Set("parallelInfo", r.parallelInfo);
  o.Set("defaultThreads", r.threads);
  o.Set("openblasCore", r.openblasCore);
  o.Set("openblasConfig", r.openblasConfig);
  o.Set("cpuGemm", cpuGemmBackend());
  o.Set("tensorCache", cacheLargeTensorBlocks());
  o.Set("cachedTensorBytes", static_cast<double>(cachedTensorBytes()));
  return o;
}

// preprocess([{ data: Uint8Array (RGB, interleaved), width, height }], resize, crop)
//   -> Promise<Float32Array> of shape [N, 3, crop, crop]
Napi::Value preprocess(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return promiseOrRejection(env, [&]() -> Napi::Value {
    if (!info[0].IsArray()) throw CoreError(codes::kInvalidArgument, "preprocess expects an array of images");
    auto list = info[0].As<Napi::Array>();
    const auto resize = info[1].As<Napi::Number>().Int64Value();
    const auto crop = info[2].As<Napi::Number>().Int64Value();
    // Copy the pixels: the JS buffers may be reused or collected while the job runs.
    auto pixels = std::make_shared<std::vector<std::vector<uint8_t>>>();
    auto dims = std::make_shared<std::vector<std::pair<int64_t, int64_t>>>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      auto o = list.Get(i).As<Napi::Object>();
      auto data = o.Get("data").As<Napi::Uint8Array>();
      const auto w = o.Get("width").As<Napi::Number>().Int64Value();
      const auto h = o.Get("height").As<Napi::Number>().Int64Value();
      if (static_cast<int64_t>(data.ByteLength()) != w * h * 3)
        throw CoreError(codes::kInvalidArgument, "image " + std::to_string(i) + ": expected " +
                                                     std::to_string(w * h * 3) + " bytes of RGB");
      pixels->emplace_back(data.Data(), data.Data() + data.ByteLength());
      dims->emplace_back(h, w);
    }
    return schedule<torch::Tensor>(
        env, dataExecutor(),
        [pixels, dims, resize, crop] {
          std::vector<RawImage> raws;
          for (size_t i = 0; i < pixels->size(); ++i)
            raws.push_back({(*pixels)[i].data(), (*dims)[i].first, (*dims)[i].second});
          return preprocessImages(raws, resize, crop);
        },
        [](Napi::Env e, torch::Tensor& t) -> Napi::Value { return float32ArrayFrom(e, t); });
  });
}

// fewShotViews(Float32Array, [N, 3, H, W]) -> Promise<Float32Array> of shape [22 N, 3, H, W]
Napi::Value fewShotViewsOf(const Napi::CallbackInfo& info) {
  auto env = info.Env();
  return promiseOrRejection(env, [&]() -> Napi::Value {
    auto images = std::make_shared<torch::Tensor>(tensorFromJs(info[0], info[1], "few-shot images"));  // a copy: JS may reuse it
    return schedule<torch::Tensor>(
        env, dataExecutor(), [images] { return fewShotViews(*images); },
        [](Napi::Env e, torch::Tensor& t) -> Napi::Value { return float32ArrayFrom(e, t, Memory::kHandOver); });
  });
}

// detachArrayBuffers([ArrayBuffer]): frees each buffer's memory now instead of at a later
// collection (lib/model/model.ts, after a load has copied the weights into the network).
Napi::Value detachArrayBuffers(const Napi::CallbackInfo& info) {
  if (info[0].IsArray()) {
    auto list = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); ++i) {
      Napi::Value v = list.Get(i);
      if (!v.IsArrayBuffer()) continue;
      auto buffer = v.As<Napi::ArrayBuffer>();
      if (!buffer.IsDetached()) buffer.Detach();
    }
  }
  return info.Env().Undefined();
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  installForkGuard();
  cacheLargeTensorBlocks();
  exports.Set("runtime", Napi::Function::New(env, runtime));
  exports.Set("preprocess", Napi::Function::New(env, preprocess));
  exports.Set("fewShotViews", Napi::Function::New(env, fewShotViewsOf));
  exports.Set("detachArrayBuffers", Napi::Function::New(env, detachArrayBuffers));
  exports.Set("NativeModel", NativeModel::define(env));
  return exports;
}

}  // namespace
}  // namespace inpformer::napi

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return inpformer::napi::init(env, exports); }

NODE_API_MODULE(inp_former, InitAddon)
