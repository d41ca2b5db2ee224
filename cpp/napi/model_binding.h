// model_binding.h - the NativeModel class seen by lib/native/native.ts: one InpFormerModel, one worker
// thread; every method converts its arguments, schedules the core call and returns a Promise.
#pragma once
#include <napi.h>

#include <memory>

#include "core/executor.h"
#include "core/model.h"

namespace inpformer::napi {

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit NativeModel(const Napi::CallbackInfo& info);
  ~NativeModel() override;

 private:
  struct State {
    std::unique_ptr<InpFormerModel> model;
    // whose names the parts of the last load() carry (loadWeights(part, true))
    InpFormerModel::WeightScope partScope = InpFormerModel::WeightScope::kNetwork;
    InpFormerModel& get();
  };
  Napi::Value load(const Napi::CallbackInfo& info);
  Napi::Value loadWeights(const Napi::CallbackInfo& info);
  Napi::Value infer(const Napi::CallbackInfo& info);
  Napi::Value stateDict(const Napi::CallbackInfo& info);
  Napi::Value beginTraining(const Napi::CallbackInfo& info);
  Napi::Value trainStep(const Napi::CallbackInfo& info);
  Napi::Value endTraining(const Napi::CallbackInfo& info);
  Napi::Value optimizerState(const Napi::CallbackInfo& info);
  Napi::Value setOptimizerState(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  SerialExecutor& executor(Napi::Env env);

  std::shared_ptr<State> state_ = std::make_shared<State>();
  std::unique_ptr<SerialExecutor> executor_;
};

}  // namespace inpformer::napi
