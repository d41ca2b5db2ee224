// async_job.cpp - the one error path from C++ to JS.
#include "async_job.h"

#include <c10/util/Exception.h>

namespace inpformer::napi {

Napi::Error makeError(Napi::Env env, const std::string& code, const std::string& message) {
  auto e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

bool captureErrors(const std::function<void()>& fn, std::string& code, std::string& message) {
  try {
    fn();
    return true;
  } catch (const CoreError& e) {
    code = e.code();
    message = e.what();
  } catch (const c10::Error& e) {
    // what() carries a C++ backtrace; users need the message.
    code = "ERR_INP_TORCH";
    message = e.what_without_backtrace();
  } catch (const Napi::Error& e) {
    code = codes::kInvalidArgument;
    message = e.Message();
  } catch (const std::bad_alloc&) {
    code = "ERR_INP_OUT_OF_MEMORY";
    message = "out of memory";
  } catch (const std::exception& e) {
    code = "ERR_INP_NATIVE";
    message = e.what();
  } catch (...) {
    code = "ERR_INP_NATIVE";
    message = "unknown native error";
  }
  return false;
}

Napi::Value promiseOrRejection(Napi::Env env, const std::function<Napi::Value()>& fn) {
  std::string code, message;
  Napi::Value result;
  if (captureErrors([&] { result = fn(); }, code, message)) return result;
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(makeError(env, code, message).Value());
  return d.Promise();
}

}  // namespace inpformer::napi
