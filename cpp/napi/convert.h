// convert.h - conversions between JS values and core types (tensors, configs, options).
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <map>
#include <string>

#include "core/config.h"
#include "core/inp_former.h"
#include "core/trainer.h"

namespace inpformer::napi {

// How a tensor made from a Float32Array holds its data.
enum class Memory {
  kCopy,    // a copy, made here on the JS thread (small inputs)
  kBorrow,  // the Float32Array's own memory, read later on the model's thread: no copy on the JS
            // thread. The caller must keep the arrays alive and unchanged until the native job
            // that reads them has ended (lib/native/native.ts: NativeModel.load, loadWeights).
  kHandOver,  // (results) the tensor's memory given to JS; see float32ArrayFrom
};

// Float32Array + shape -> a CPU float tensor.
torch::Tensor tensorFromJs(const Napi::Value& data, const Napi::Value& shape, const std::string& what,
                           Memory memory = Memory::kCopy);
// undefined -> none; an array of integers -> the keys that name a training batch's images.
std::vector<int64_t> imageKeysFromJs(const Napi::Value& keys);
// A tensor -> a Float32Array: a copy, or with Memory::kHandOver, for a tensor made for JS that
// nothing else will write (an inference result, a cloned state dict), the tensor's own memory,
// owned by the array from then on and freed when it is collected: no copy on the JS thread.
Napi::Float32Array float32ArrayFrom(Napi::Env env, const torch::Tensor& t, Memory memory = Memory::kCopy);
Napi::Array shapeToJs(Napi::Env env, const torch::Tensor& t);

// Named weights [{ name, data: Float32Array, shape }] -> map.
std::map<std::string, torch::Tensor> namedTensorsFromJs(const Napi::Array& list, Memory memory = Memory::kCopy);

// The weights of a load that may come in parts: [{ name, shape, data? }], where an entry without
// data names a tensor (and its shape) that a later loadWeights call brings.
struct WeightList {
  std::map<std::string, torch::Tensor> tensors;  // the entries that have data
  TensorShapes shapes;                           // every entry's shape
};
WeightList weightListFromJs(const Napi::Array& list, Memory memory);

InpFormerConfig configFromJs(const Napi::Object& o);
RuntimeOptions runtimeFromJs(const Napi::Object& o);
TrainOptions trainOptionsFromJs(const Napi::Object& o);

}  // namespace inpformer::napi
