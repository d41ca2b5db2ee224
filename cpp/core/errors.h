// errors.h - the one error type the core throws.
// Each error carries a stable code so the JS facade can map it to a typed error class
// without parsing messages (see lib/errors.ts).
#pragma once
#include <stdexcept>
#include <string>

namespace inpformer {

class CoreError : public std::runtime_error {
 public:
  CoreError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Codes shared with lib/errors.ts.
namespace codes {
constexpr const char* kInvalidArgument = "ERR_INP_INVALID_ARGUMENT";
constexpr const char* kCheckpoint = "ERR_INP_CHECKPOINT";
constexpr const char* kBusy = "ERR_INP_BUSY";
constexpr const char* kAborted = "ERR_INP_ABORTED";
constexpr const char* kDisposed = "ERR_INP_DISPOSED";
constexpr const char* kDevice = "ERR_INP_DEVICE";
constexpr const char* kDiverged = "ERR_INP_DIVERGED";
}  // namespace codes

}  // namespace inpformer
