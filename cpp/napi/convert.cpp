// convert.cpp - JS <-> core conversions. User options are validated and completed in
// lib/model/options.ts; here every read is still checked, so a malformed call is a typed error, never a crash.
#include "convert.h"

#include <cmath>
#include <cstring>

#include "core/errors.h"

namespace inpformer::napi {
namespace {

[[noreturn]] void typeError(const std::string& m) { throw CoreError(codes::kInvalidArgument, m); }

Napi::Value get(const Napi::Object& o, const char* key) { return o.Get(key); }

// Every key is required: lib/ resolves each option to a complete record (lib/model/options.ts owns
// the defaults), so a missing key here is a bug on the JS side, never a silent default.
Napi::Value required(const Napi::Object& o, const char* key) {
  auto v = get(o, key);
  if (v.IsUndefined()) typeError(std::string("native boundary: missing key '") + key + "'");
  return v;
}

double number(const Napi::Object& o, const char* key) {
  auto v = required(o, key);
  if (!v.IsNumber()) typeError(std::string(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

int64_t integer(const Napi::Object& o, const char* key) {
  double d = number(o, key);
  if (d != static_cast<double>(static_cast<int64_t>(d))) typeError(std::string(key) + " must be an integer");
  return static_cast<int64_t>(d);
}

bool boolean(const Napi::Object& o, const char* key) {
  auto v = required(o, key);
  if (!v.IsBoolean()) typeError(std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string string(const Napi::Object& o, const char* key) {
  auto v = required(o, key);
  if (!v.IsString()) typeError(std::string(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<int64_t> intList(const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) typeError(what + " must be an array of integers");
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    auto e = a.Get(i);
    const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : 0.5;
    if (!(std::abs(d) <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d)))
      typeError(what + " must be an array of integers");
    out.push_back(static_cast<int64_t>(d));
  }
  return out;
}

std::vector<std::vector<int64_t>> groups(const Napi::Object& o, const char* key) {
  auto v = required(o, key);
  if (!v.IsArray()) typeError(std::string(key) + " must be an array of arrays");
  auto a = v.As<Napi::Array>();
  std::vector<std::vector<int64_t>> out;
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(intList(a.Get(i), key));
  return out;
}

}  // namespace

torch::Tensor tensorFromJs(const Napi::Value& data, const Napi::Value& shape, const std::string& what, Memory memory) {
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    typeError(what + ": data must be a Float32Array");
  auto arr = data.As<Napi::Float32Array>();
  auto dims = intList(shape, what + ": shape");
  int64_t numel = 1;
  for (auto d : dims) {
    if (d < 0) typeError(what + ": negative dimension in shape");
    numel *= d;
  }
  if (numel != static_cast<int64_t>(arr.ElementLength()))
    typeError(what + ": shape holds " + std::to_string(numel) + " values but data has " +
              std::to_string(arr.ElementLength()));
  if (memory == Memory::kBorrow && numel > 0) return torch::from_blob(arr.Data(), dims, torch::kFloat);
  auto t = torch::empty(dims, torch::kFloat);
  if (numel > 0) std::memcpy(t.data_ptr<float>(), arr.Data(), static_cast<size_t>(numel) * sizeof(float));
  return t;
}

Napi::Float32Array float32ArrayFrom(Napi::Env env, const torch::Tensor& t, Memory memory) {
  auto c = t.to(torch::kCPU, torch::kFloat).contiguous();
  // Handed over: a ViT-B's 620 MB of weights would otherwise be copied a second time, here on
  // the JS thread. Only a tensor that is alone on its whole storage qualifies (else: a copy).
  if (memory == Memory::kHandOver && c.numel() > 0 && c.storage().use_count() == 1 && c.storage_offset() == 0 &&
      c.storage().nbytes() == static_cast<size_t>(c.numel()) * sizeof(float)) {
    auto* owner = new torch::Tensor(c);
    auto buffer = Napi::ArrayBuffer::New(
        env, owner->data_ptr<float>(), static_cast<size_t>(c.numel()) * sizeof(float),
        [](Napi::Env, void*, torch::Tensor* held) { delete held; }, owner);
    return Napi::Float32Array::New(env, static_cast<size_t>(c.numel()), buffer, 0);
  }
  auto out = Napi::Float32Array::New(env, static_cast<size_t>(c.numel()));
  if (c.numel() > 0) std::memcpy(out.Data(), c.data_ptr<float>(), static_cast<size_t>(c.numel()) * sizeof(float));
  return out;
}

Napi::Array shapeToJs(Napi::Env env, const torch::Tensor& t) {
  auto a = Napi::Array::New(env, static_cast<size_t>(t.dim()));
  for (int64_t i = 0; i < t.dim(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.size(i))));
  return a;
}

WeightList weightListFromJs(const Napi::Array& list, Memory memory) {
  WeightList out;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    auto item = list.Get(i);
    if (!item.IsObject()) typeError("weights must be objects { name, data, shape }");
    auto o = item.As<Napi::Object>();
    auto name = string(o, "name");
    if (name.empty()) typeError("a weight has no name");
    if (out.shapes.count(name)) typeError("weight '" + name + "' is given twice");
    const auto what = "weight '" + name + "'";
    if (o.Get("data").IsUndefined()) {
      auto dims = intList(o.Get("shape"), what + ": shape");
      for (auto d : dims)
        if (d < 0) typeError(what + ": negative dimension in shape");
      out.shapes.emplace(name, std::move(dims));
      continue;
    }
    auto t = tensorFromJs(o.Get("data"), o.Get("shape"), what, memory);
    out.shapes.emplace(name, t.sizes().vec());
    out.tensors.emplace(name, std::move(t));
  }
  return out;
}

std::map<std::string, torch::Tensor> namedTensorsFromJs(const Napi::Array& list, Memory memory) {
  auto weights = weightListFromJs(list, memory);
  if (weights.tensors.size() != weights.shapes.size()) typeError("every weight needs its data here");
  return std::move(weights.tensors);
}

InpFormerConfig configFromJs(const Napi::Object& o) {
  InpFormerConfig c;
  auto encV = required(o, "encoder");
  if (!encV.IsObject()) typeError("config.encoder must be an object");
  auto e = encV.As<Napi::Object>();
  c.encoder.embedDim = integer(e, "embedDim");
  c.encoder.depth = integer(e, "depth");
  c.encoder.numHeads = integer(e, "numHeads");
  c.encoder.numRegisterTokens = integer(e, "numRegisterTokens");
  c.encoder.patchSize = integer(e, "patchSize");
  c.encoder.posGridSize = integer(e, "posGridSize");
  c.encoder.mlpHiddenDim = integer(e, "mlpHiddenDim");
  c.encoder.swiglu = boolean(e, "swiglu");
  c.encoder.lnEps = number(e, "lnEps");
  c.encoder.interpolateOffset = number(e, "interpolateOffset");
  c.targetLayers = intList(required(o, "targetLayers"), "targetLayers");
  c.fuseLayerEncoder = groups(o, "fuseLayerEncoder");
  c.fuseLayerDecoder = groups(o, "fuseLayerDecoder");
  c.removeClassToken = boolean(o, "removeClassToken");
  c.inpNum = integer(o, "inpNum");
  c.numHeads = integer(o, "numHeads");
  c.decoderDepth = integer(o, "decoderDepth");
  c.extractorDepth = integer(o, "extractorDepth");
  c.inpLnEps = number(o, "inpLnEps");
  c.mlpRatio = number(o, "mlpRatio");
  c.qkvBias = boolean(o, "qkvBias");
  c.mlpBias = boolean(o, "mlpBias");
  return c;
}

RuntimeOptions runtimeFromJs(const Napi::Object& o) {
  RuntimeOptions r;
  r.device = string(o, "device");
  r.precision = string(o, "precision");
  r.threads = static_cast<int>(integer(o, "threads"));
  return r;
}

std::vector<int64_t> imageKeysFromJs(const Napi::Value& keys) {
  if (keys.IsUndefined()) return {};
  auto out = intList(keys, "image keys");
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i] < 0) typeError("image key " + std::to_string(i) + " is negative");
  return out;
}

TrainOptions trainOptionsFromJs(const Napi::Object& o) {
  TrainOptions t;  // inpLossWeight and softMiningPower are the recipe's, not options
  t.totalSteps = integer(o, "totalSteps");
  t.warmupSteps = integer(o, "warmupSteps");
  t.learningRate = number(o, "learningRate");
  t.finalLearningRate = number(o, "finalLearningRate");
  t.weightDecay = number(o, "weightDecay");
  t.gradClipNorm = number(o, "gradClipNorm");
  const auto products = trainableProductsNamed(string(o, "matmul"));
  if (!products) typeError("matmul must be 'auto', 'libtorch' or 'onednn'");
  t.products = *products;
  t.bfloat16Products = boolean(o, "bfloat16Products");
  t.featureCacheBytes = integer(o, "featureCacheBytes");
  return t;
}

}  // namespace inpformer::napi
