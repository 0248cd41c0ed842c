// Serves the API on a unix socket: one request and one response per connection, each
// connection on its own thread so that a long checkpoint never holds up a `list`.
#pragma once

#include <atomic>
#include <string>

#include <utility>  // Boost 1.74 asio uses std::exchange without including it
#include <boost/asio.hpp>

#include "common/status.h"
#include "daemon/job_manager.h"

namespace lazarus {

class ApiServer {
 public:
  ApiServer(boost::asio::io_context& io, JobManager& jobs) : io_(io), jobs_(jobs), acceptor_(io) {}

  // Binds `path`. Fails with kAlreadyExists when a live daemon answers on it; a stale
  // socket file left by a dead daemon is replaced.
  Status Listen(const std::string& path);
  void Start() { Accept(); }
  // Waits for the request threads still running.
  void Drain();

 private:
  void Accept();
  void Serve(boost::asio::local::stream_protocol::socket socket);
  api::Response Handle(const api::Request& request, const Caller& caller);

  boost::asio::io_context& io_;
  JobManager& jobs_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::atomic<int> in_flight_{0};
};

}  // namespace lazarus
