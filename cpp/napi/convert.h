// convert.h - conversions between JS values and core types (tensors, configs, options).
#pragma once
#include <napi.h>
#include <torch/torch.h>

#include <map>
#include <string>

#include "core/config.h"
#include "core/trainer.h"

namespace inpformer::napi {

// Float32Array + shape -> a CPU float tensor owning a copy of the data.
torch::Tensor tensorFromJs(const Napi::Value& data, const Napi::Value& shape, const std::string& what);
// A float32 CPU tensor -> a Float32Array copy.
Napi::Float32Array float32ArrayFrom(Napi::Env env, const torch::Tensor& t);
Napi::Array shapeToJs(Napi::Env env, const torch::Tensor& t);

// Named weights [{ name, data: Float32Array, shape }] -> map.
std::map<std::string, torch::Tensor> namedTensorsFromJs(const Napi::Array& list);

InpFormerConfig configFromJs(const Napi::Object& o);
RuntimeOptions runtimeFromJs(const Napi::Object& o);
TrainOptions trainOptionsFromJs(const Napi::Object& o);

}  // namespace inpformer::napi
