// Status / StatusOr: errors as values, with a code chosen by what the caller should do
// and a message that names what was being done ("open manifest /var/...: ENOSPC").
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace lazarus {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // the request is wrong: fix it and ask again
  kNotFound,            // no such job / snapshot / file
  kFailedPrecondition,  // the state does not allow it now (e.g. restore of a running job)
  kAlreadyExists,       // someone else holds it (socket in use, state dir locked)
  kPermissionDenied,
  kIo,                  // the operating system refused (errno in the message)
  kCriu,                // CRIU failed; the message carries its error lines
  kDataLoss,            // stored data is damaged
  kInternal,
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }
  [[nodiscard]] bool ok() const { return code_ == Code::kOk; }
  [[nodiscard]] Code code() const { return code_; }
  [[nodiscard]] const std::string& message() const { return message_; }

  // Prefixes the message with what the caller was doing.
  [[nodiscard]] Status Context(const std::string& what) const {
    return ok() ? *this : Status(code_, what + ": " + message_);
  }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// A Status for a failed syscall: "<what>: <strerror(err)>".
Status ErrnoStatus(const std::string& what, int err);
// The same with the current errno.
Status ErrnoStatus(const std::string& what);

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  StatusOr(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT

  [[nodiscard]] bool ok() const { return status_.ok(); }
  [[nodiscard]] const Status& status() const { return status_; }
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace lazarus

#define LAZARUS_RETURN_IF_ERROR(expr)        \
  do {                                       \
    ::lazarus::Status lazarus_status_ = (expr); \
    if (!lazarus_status_.ok()) return lazarus_status_; \
  } while (0)
