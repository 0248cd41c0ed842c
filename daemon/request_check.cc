#include "daemon/request_check.h"

#include <string>

namespace lazarus {
namespace {

Status Invalid(const std::string& what) { return Status(Code::kInvalidArgument, what); }

// Job ids are 8 hex digits; names are short words.
Status CheckJobRef(const std::string& ref) {
  if (ref.empty()) return Invalid("no job given");
  if (ref.size() > kMaxNameBytes) return Invalid("job reference longer than " + std::to_string(kMaxNameBytes) + " bytes");
  for (char c : ref)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return Invalid("job reference may hold letters, digits, '-', '_' and '.' only");
  return Status::Ok();
}

Status CheckName(const std::string& name) {
  if (name.empty()) return Status::Ok();
  Status st = CheckJobRef(name);
  return st.ok() ? st : Invalid("invalid job name: " + st.message().substr(st.message().find(' ') + 1));
}

Status CheckString(const std::string& s, size_t max, const char* what) {
  if (s.size() > max) return Invalid(std::string(what) + " longer than " + std::to_string(max) + " bytes");
  if (s.find('\0') != std::string::npos) return Invalid(std::string(what) + " holds a NUL byte");
  return Status::Ok();
}

Status CheckRun(const api::RunRequest& run) {
  if (run.argv().empty()) return Invalid("no command given");
  if (static_cast<size_t>(run.argv_size()) > kMaxArgs) return Invalid("more than " + std::to_string(kMaxArgs) + " arguments");
  if (run.argv(0).empty()) return Invalid("empty command");
  for (const auto& a : run.argv()) LAZARUS_RETURN_IF_ERROR(CheckString(a, kMaxArgBytes, "an argument"));
  if (static_cast<size_t>(run.env_size()) > kMaxEnvEntries)
    return Invalid("more than " + std::to_string(kMaxEnvEntries) + " environment entries");
  for (const auto& e : run.env()) {
    LAZARUS_RETURN_IF_ERROR(CheckString(e, kMaxArgBytes, "an environment entry"));
    if (e.find('=') == std::string::npos || e[0] == '=') return Invalid("environment entry without NAME=: " + e.substr(0, 64));
  }
  LAZARUS_RETURN_IF_ERROR(CheckString(run.cwd(), kMaxPathBytes, "the working directory"));
  if (run.cwd().empty() || run.cwd()[0] != '/') return Invalid("the working directory must be an absolute path");
  return CheckName(run.name());
}

}  // namespace

Status CheckRequest(const api::Request& request) {
  switch (request.body_case()) {
    case api::Request::kRun: return CheckRun(request.run());
    case api::Request::kList: return Status::Ok();
    case api::Request::kStatus: return CheckJobRef(request.status().job());
    case api::Request::kCheckpoint: return CheckJobRef(request.checkpoint().job());
    case api::Request::kSnapshots: return CheckJobRef(request.snapshots().job());
    case api::Request::kKill: return CheckJobRef(request.kill().job());
    case api::Request::kRm: return CheckJobRef(request.rm().job());
    case api::Request::kLog: return CheckJobRef(request.log().job());
    case api::Request::kPolicy: return CheckJobRef(request.policy().job());
    case api::Request::kVerify:
      if (request.verify().all()) {
        if (!request.verify().job().empty()) return Invalid("verify takes a job or --all, not both");
        return Status::Ok();
      }
      return CheckJobRef(request.verify().job());
    case api::Request::kRestore: {
      LAZARUS_RETURN_IF_ERROR(CheckJobRef(request.restore().job()));
      if (!request.restore().name().empty() && !request.restore().clone()) return Invalid("a name only goes with a clone");
      return CheckName(request.restore().name());
    }
    case api::Request::kAttach: {
      if (request.attach().pid() <= 1) return Invalid("cannot attach PID " + std::to_string(request.attach().pid()));
      return CheckName(request.attach().name());
    }
    case api::Request::BODY_NOT_SET: break;
  }
  return Invalid("empty or unknown request (is the client newer than the daemon?)");
}

}  // namespace lazarus
