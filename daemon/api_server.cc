#include "daemon/api_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/fs_util.h"
#include "common/unique_fd.h"
#include "daemon/request_check.h"
#include "daemon/wire.h"

namespace lazarus {
namespace {

bool SomeoneListens(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  path.copy(addr.sun_path, sizeof addr.sun_path - 1);
  return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

template <typename T>
api::Response Reply(StatusOr<T> result, T* (api::Response::*mutable_body)()) {
  api::Response resp;
  if (!result.ok()) {
    resp.set_error(result.status().message());
    resp.set_error_code(CodeName(result.status().code()));
    return resp;
  }
  resp.set_ok(true);
  *(resp.*mutable_body)() = std::move(result).value();
  return resp;
}

api::Response Error(const Status& status) {
  api::Response resp;
  resp.set_error(status.message());
  resp.set_error_code(CodeName(status.code()));
  return resp;
}

}  // namespace

Status ApiServer::Listen(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path))
    return Status(Code::kInvalidArgument, "socket path too long: " + path);
  LAZARUS_RETURN_IF_ERROR(MakeDirs(Dirname(path), 0755).Context("create the socket's directory"));
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Status(Code::kAlreadyExists, path + " exists and is not a socket");
    if (SomeoneListens(path)) return Status(Code::kAlreadyExists, "socket " + path + " is in use by a live daemon");
    ::unlink(path.c_str());  // left by a daemon that died
  }
  boost::system::error_code ec;
  boost::asio::local::stream_protocol::endpoint endpoint(path);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(64, ec);
  if (ec) return Status(Code::kIo, "listen on " + path + ": " + ec.message());
  // Jobs and CRIU are forked from this process: none of them may inherit the socket.
  ::fcntl(acceptor_.native_handle(), F_SETFD, FD_CLOEXEC);
  // Users may connect: every request is checked against the caller's uid.
  ::chmod(path.c_str(), 0666);
  return Status::Ok();
}

void ApiServer::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, boost::asio::local::stream_protocol::socket socket) {
    if (ec == boost::asio::error::operation_aborted) return;
    if (!ec) {
      ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
      ++in_flight_;
      std::thread([this, s = std::move(socket)]() mutable {
        Serve(std::move(s));
        --in_flight_;
      }).detach();
    } else {
      spdlog::warn("accept: {}", ec.message());
    }
    Accept();
  });
}

void ApiServer::Drain() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (int i = 0; i < 600 && in_flight_ > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

void ApiServer::Serve(boost::asio::local::stream_protocol::socket socket) {
  const int fd = socket.native_handle();
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    spdlog::warn("SO_PEERCRED: {}", std::strerror(errno));
    return;  // a peer we cannot identify gets nothing
  }
  const Caller caller{cred.uid, cred.gid, cred.pid};
  api::Request request;
  Status st = wire::ReadMessage(fd, &request);
  if (st.code() == Code::kNotFound) return;  // connected and left without a request
  if (st.ok()) st = CheckRequest(request);
  api::Response response = st.ok() ? Handle(request, caller) : Error(st.Context("bad request"));
  if (!response.ok()) spdlog::info("request failed: {}", response.error());
  st = wire::WriteMessage(fd, response);
  if (!st.ok()) spdlog::warn("reply: {}", st.message());
}

api::Response ApiServer::Handle(const api::Request& request, const Caller& caller) {
  using R = api::Response;
  switch (request.body_case()) {
    case api::Request::kRun: return Reply(jobs_.Run(request.run(), caller), &R::mutable_job);
    case api::Request::kAttach: return Reply(jobs_.Attach(request.attach(), caller), &R::mutable_job);
    case api::Request::kList: return Reply(jobs_.List(caller), &R::mutable_jobs);
    case api::Request::kStatus: return Reply(jobs_.GetStatus(request.status().job(), caller), &R::mutable_job);
    case api::Request::kCheckpoint:
      return Reply(jobs_.Checkpoint(request.checkpoint().job(), caller), &R::mutable_snapshot);
    case api::Request::kSnapshots:
      return Reply(jobs_.Snapshots(request.snapshots().job(), caller), &R::mutable_snapshots);
    case api::Request::kRestore: return Reply(jobs_.Restore(request.restore(), caller), &R::mutable_job);
    case api::Request::kKill: return Reply(jobs_.Kill(request.kill().job(), caller), &R::mutable_job);
    case api::Request::kPolicy: return Reply(jobs_.SetPolicy(request.policy(), caller), &R::mutable_job);
    case api::Request::kLog: return Reply(jobs_.Log(request.log(), caller), &R::mutable_log);
    case api::Request::kVerify: return Reply(jobs_.Verify(request.verify(), caller), &R::mutable_verify);
    case api::Request::kRm: {
      Status st = jobs_.Remove(request.rm(), caller);
      if (!st.ok()) return Error(st);
      R resp;
      resp.set_ok(true);
      return resp;
    }
    case api::Request::BODY_NOT_SET: break;
  }
  return Error(Status(Code::kInvalidArgument, "empty or unknown request (is the client newer than the daemon?)"));
}

}  // namespace lazarus
