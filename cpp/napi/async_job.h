// async_job.h - run a core job on a SerialExecutor and settle a Promise with its result.
// The worker thread never touches JS: it computes a plain C++ result, then hands it to the
// JS thread through a ThreadSafeFunction, where it is converted (or the error rejected).
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <string>

#include "core/errors.h"
#include "core/executor.h"

namespace inpformer::napi {

// A JS Error with a `code` property that lib/errors.ts maps to a typed class.
Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message);

// Runs fn, turning every C++ exception into (code, message). Returns true on success.
bool captureErrors(const std::function<void()>& fn, std::string& code, std::string& message);

// Runs fn (argument conversion, then scheduling); a C++ exception thrown there becomes a
// rejected Promise, like the errors of the job itself.
Napi::Value promiseOrRejection(Napi::Env env, const std::function<Napi::Value()>& fn);

template <class Result>
Napi::Promise schedule(Napi::Env env, SerialExecutor& executor, std::function<Result()> work,
                       std::function<Napi::Value(Napi::Env, Result&)> toJs, bool computeTurn = true) {
  struct Job {
    explicit Job(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise::Deferred deferred;
    Napi::ThreadSafeFunction tsfn;
    Result result{};
    bool ok = false;
    std::string code, message;
  };
  auto job = std::make_shared<Job>(env);
  job->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                            "inp-former", 0, 1);
  executor.post([job, work = std::move(work), toJs = std::move(toJs)]() mutable {
    job->ok = captureErrors([&] { job->result = work(); }, job->code, job->message);
    job->tsfn.BlockingCall([job, toJs](Napi::Env env, Napi::Function) {
      if (!job->ok) {
        job->deferred.Reject(makeError(env, job->code, job->message).Value());
        return;
      }
      try {
        job->deferred.Resolve(toJs(env, job->result));
      } catch (const Napi::Error& e) {
        job->deferred.Reject(e.Value());
      }
      job->result = Result{};  // free tensors on the JS thread now, not at the last reference
    });
    job->tsfn.Release();
  }, computeTurn);
  return job->deferred.Promise();
}

}  // namespace inpformer::napi
