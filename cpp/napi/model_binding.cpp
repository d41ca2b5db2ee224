// model_binding.cpp - NativeModel methods: convert, schedule, convert back. No model logic here.
#include "model_binding.h"

#include "async_job.h"
#include "convert.h"
#include "core/errors.h"

namespace inpformer::napi {
namespace {

struct Unit {};  // the result of jobs that resolve to undefined

Napi::Value undefinedOf(Napi::Env env, Unit&) { return env.Undefined(); }

Napi::Object tensorToJs(Napi::Env env, const std::string& name, const torch::Tensor& t, Memory memory = Memory::kCopy) {
  auto o = Napi::Object::New(env);
  if (!name.empty()) o.Set("name", name);
  o.Set("data", float32ArrayFrom(env, t, memory));
  o.Set("shape", shapeToJs(env, t));
  return o;
}

Napi::Array tensorListToJs(Napi::Env env, const std::vector<torch::Tensor>& ts) {
  auto a = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); ++i) a.Set(static_cast<uint32_t>(i), tensorToJs(env, "", ts[i]));
  return a;
}

std::vector<torch::Tensor> tensorListFromJs(const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throw CoreError(codes::kInvalidArgument, what + " must be an array");
  auto a = v.As<Napi::Array>();
  std::vector<torch::Tensor> out;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    auto o = a.Get(i).As<Napi::Object>();
    out.push_back(tensorFromJs(o.Get("data"), o.Get("shape"), what));
  }
  return out;
}

}  // namespace

InpFormerModel& NativeModel::State::get() {
  if (!model) throw CoreError(codes::kInvalidArgument, "the model is not loaded");
  return *model;
}

Napi::Function NativeModel::define(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {InstanceMethod("load", &NativeModel::load), InstanceMethod("loadWeights", &NativeModel::loadWeights),
                      InstanceMethod("infer", &NativeModel::infer),
                      InstanceMethod("stateDict", &NativeModel::stateDict),
                      InstanceMethod("beginTraining", &NativeModel::beginTraining),
                      InstanceMethod("trainStep", &NativeModel::trainStep),
                      InstanceMethod("endTraining", &NativeModel::endTraining),
                      InstanceMethod("optimizerState", &NativeModel::optimizerState),
                      InstanceMethod("setOptimizerState", &NativeModel::setOptimizerState),
                      InstanceMethod("dispose", &NativeModel::dispose)});
}

NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  int threads = 0;
  if (info.Length() > 0 && info[0].IsNumber()) threads = info[0].As<Napi::Number>().Int32Value();
  executor_ = std::make_unique<SerialExecutor>(threads, /*exclusiveCompute=*/true);
}

NativeModel::~NativeModel() = default;  // the executor finishes queued jobs, then joins

SerialExecutor& NativeModel::executor(Napi::Env env) {
  if (!executor_) throw CoreError(codes::kDisposed, "the model was disposed");
  return *executor_;
}

Napi::Value NativeModel::load(const Napi::CallbackInfo& info) {
  return promiseOrRejection(info.Env(), [&]() -> Napi::Value {
    auto config = configFromJs(info[0].As<Napi::Object>());
    auto runtime = runtimeFromJs(info[1].As<Napi::Object>());
    // entries without data come later, through loadWeights(part, true)
    WeightList weights;
    const bool haveWeights = info[2].IsArray();
    if (haveWeights) weights = weightListFromJs(info[2].As<Napi::Array>(), Memory::kBorrow);
    const auto seed = info[3].IsNumber() ? static_cast<uint64_t>(info[3].As<Napi::Number>().Int64Value()) : 0;
    // encoderOnly: weights hold the encoder alone; the rest starts from the reference init.
    const bool encoderOnly = info[4].IsBoolean() && info[4].As<Napi::Boolean>().Value();
    auto state = state_;
    return schedule<Unit>(
        info.Env(), executor(info.Env()),
        [state, config, runtime, weights = std::move(weights), haveWeights, encoderOnly, seed]() mutable {
          auto model = std::make_unique<InpFormerModel>(config, runtime);
          if (!haveWeights || encoderOnly) model->initTrainable(seed);
          const auto scope = encoderOnly ? InpFormerModel::WeightScope::kEncoder : InpFormerModel::WeightScope::kNetwork;
          if (haveWeights) {
            model->checkWeights(weights.shapes, scope);
            model->copyWeights(weights.tensors, scope);
          }
          weights.tensors.clear();
          state->partScope = scope;
          state->model = std::move(model);
          return Unit{};
        },
        undefinedOf);
  });
}

Napi::Value NativeModel::loadWeights(const Napi::CallbackInfo& info) {
  return promiseOrRejection(info.Env(), [&]() -> Napi::Value {
    auto weights = namedTensorsFromJs(info[0].As<Napi::Array>(), Memory::kBorrow);
    // part: the rest of a load whose names and shapes load() has checked whole
    const bool part = info.Length() > 1 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
    auto state = state_;
    return schedule<Unit>(
        info.Env(), executor(info.Env()),
        [state, weights, part] {
          if (part) {
            state->get().copyWeights(weights, state->partScope);
          } else {
            state->get().loadWeights(weights);
          }
          return Unit{};
        },
        undefinedOf);
  });
}

Napi::Value NativeModel::infer(const Napi::CallbackInfo& info) {
  return promiseOrRejection(info.Env(), [&]() -> Napi::Value {
    auto images = tensorFromJs(info[0], info[1], "images");
    const bool features = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    auto state = state_;
    return schedule<InferenceResult>(
        info.Env(), executor(info.Env()),
        [state, images, features] { return state->get().infer(images, features); },
        [features](Napi::Env env, InferenceResult& r) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("scores", float32ArrayFrom(env, r.scores, Memory::kHandOver));
          o.Set("anomalyMaps", float32ArrayFrom(env, r.anomalyMaps, Memory::kHandOver));
          o.Set("mapShape", shapeToJs(env, r.anomalyMaps));
          if (features) {
            o.Set("encoderFeatures", tensorListToJs(env, r.encoderFeatures));
            o.Set("decoderFeatures", tensorListToJs(env, r.decoderFeatures));
            o.Set("prototypes", tensorToJs(env, "", r.prototypes));
            o.Set("inpLoss", Napi::Number::New(env, r.inpLoss.item<double>()));
            o.Set("anomalyMapsRaw", float32ArrayFrom(env, r.anomalyMapsRaw, Memory::kHandOver));
          }
          return o;
        },
        // with oneDNN's products inference never reaches OpenBLAS: no turn on the compute lock,
        // so another model's training step does not hold it up (the model is built before any
        // inference is scheduled: load() resolves first)
        /*computeTurn=*/!(state_->model && state_->model->inferenceAvoidsBlas()));
  });
}

Napi::Value NativeModel::stateDict(const Napi::CallbackInfo& info) {
  return promiseOrRejection(info.Env(), [&]() -> Napi::Value {
    auto state = state_;
    return schedule<NamedTensors>(
        info.Env(), executor(info.Env()),
        [state] {
          // A snapshot for JS, copied here on the model's thread; a float32 CPU parameter's view
          // shares its storage, which later steps write: it is cloned, a converted one is fresh.
          auto named = state->get().stateDict();
          for (auto& kv : named)
            if (kv.second.storage().use_count() > 1) kv.second = kv.second.clone();
          return named;
        },
        [](Napi::Env env, NamedTensors& named) -> Napi::Value {
          auto a = Napi::Array::New(env, named.size());
          for (size_t i = 0; i < named.size(); ++i)
            a.Set(static_cast<uint32_t>(i), tensorToJs(env, named[i].first, named[i].second, Memory::kHandOver));
          return a;
        });
  });
}

Napi::Value NativeModel::beginTraining(const Napi::CallbackInfo& info) {
  return promiseOrRejection(info.Env(), [&]() -> Napi::Value {
    auto options = trainOptionsFromJs(info[0].As<Napi::Object>());
    auto state = state_;
    return schedule<Unit>(
        info.Env(), executor(info.Env()),
        [state, options] {
          state->get().beginTraining(options);
          return Unit{};
        },
        undefinedOf);
  });
}

Napi::Value NativeModel::endTraining(const Napi::CallbackInfo& info) {
  return promiseOrRejection(info.Env(), [&]() -> Napi::Value {
    auto state = state_;
    return schedule<Unit>(
        info.Env(), executor(info.Env()),
        [state] {
          state->get().endTraining();
          return Unit{};
        },
        undefinedOf);
  });
}

Napi::Value NativeModel::trainStep(const Napi::CallbackInfo& info) {
  return promiseOrRejection(info.Env(), [&]() -> Napi::Value {
    auto batch = tensorFromJs(info[0], info[1], "batch");
    auto keys = imageKeysFromJs(info[2]);
    auto state = state_;
    return schedule<StepStats>(
        info.Env(), executor(info.Env()), [state, batch, keys] { return state->get().trainStep(batch, keys); },
        [](Napi::Env env, StepStats& s) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("step", static_cast<double>(s.step));
          o.Set("lr", s.lr);
          o.Set("loss", s.loss);
          o.Set("lossCos", s.lossCos);
          o.Set("inpLoss", s.inpLoss);
          o.Set("gradNorm", s.gradNorm);
          o.Set("reluMargin", s.reluMargin);
          o.Set("encodedImages", static_cast<double>(s.encodedImages));
          o.Set("cachedImages", static_cast<double>(s.cachedImages));
          o.Set("cachedBytes", static_cast<double>(s.cachedBytes));
          return o;
        });
  });
}

Napi::Value NativeModel::optimizerState(const Napi::CallbackInfo& info) {
  return promiseOrRejection(info.Env(), [&]() -> Napi::Value {
    auto state = state_;
    return schedule<StableAdamW::State>(
        info.Env(), executor(info.Env()),
        [state] {
          auto* trainer = state->get().trainer();
          if (!trainer) throw CoreError(codes::kInvalidArgument, "no training run has begun");
          return trainer->optimizerState();
        },
        [](Napi::Env env, StableAdamW::State& s) -> Napi::Value {
          auto o = Napi::Object::New(env);
          o.Set("step", static_cast<double>(s.step));
          o.Set("expAvg", tensorListToJs(env, s.expAvg));
          o.Set("expAvgSq", tensorListToJs(env, s.expAvgSq));
          o.Set("maxExpAvgSq", tensorListToJs(env, s.maxExpAvgSq));
          return o;
        });
  });
}

Napi::Value NativeModel::setOptimizerState(const Napi::CallbackInfo& info) {
  return promiseOrRejection(info.Env(), [&]() -> Napi::Value {
    auto o = info[0].As<Napi::Object>();
    StableAdamW::State s;
    s.step = o.Get("step").As<Napi::Number>().Int64Value();
    s.expAvg = tensorListFromJs(o.Get("expAvg"), "expAvg");
    s.expAvgSq = tensorListFromJs(o.Get("expAvgSq"), "expAvgSq");
    s.maxExpAvgSq = tensorListFromJs(o.Get("maxExpAvgSq"), "maxExpAvgSq");
    auto state = state_;
    return schedule<Unit>(
        info.Env(), executor(info.Env()),
        [state, s]() mutable {
          auto* trainer = state->get().trainer();
          if (!trainer) throw CoreError(codes::kInvalidArgument, "no training run has begun");
          trainer->setOptimizerState(std::move(s));
          return Unit{};
        },
        undefinedOf);
  });
}

Napi::Value NativeModel::dispose(const Napi::CallbackInfo& info) {
  // Queued jobs still run and settle their promises; then the thread ends.
  executor_.reset();
  state_->model.reset();
  return info.Env().Undefined();
}

}  // namespace inpformer::napi
