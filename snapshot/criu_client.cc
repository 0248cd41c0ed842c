#include "snapshot/criu_client.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <deque>
#include <fstream>

#include "common/unique_fd.h"
#include "criu/rpc.pb.h"

#ifndef LAZARUS_CRIU_BINARY
#define LAZARUS_CRIU_BINARY "criu"
#endif

namespace lazarus::snapshot {
namespace {

constexpr int kCriuLogLevel = 4;  // debug: the log is kept with the snapshot for diagnosis
constexpr size_t kMaxResponseBytes = 1 << 20;

// One `criu swrk` child and our end of its socket. Reaps the child on destruction.
class Swrk {
 public:
  // fds in `inherit` stay open across exec so that CRIU can use them by number.
  static StatusOr<Swrk> Start(const std::vector<int>& inherit) {
    int sv[2];
    if (::socketpair(AF_LOCAL, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return ErrnoStatus("socketpair for criu");
    UniqueFd ours(sv[0]), theirs(sv[1]);
    const std::string binary = CriuBinary();
    const std::string fd_arg = std::to_string(theirs.get());
    pid_t pid = ::fork();
    if (pid < 0) return ErrnoStatus("fork criu");
    if (pid == 0) {
      // Only async-signal-safe calls between fork and exec: the daemon is multithreaded.
      ::fcntl(theirs.get(), F_SETFD, 0);
      for (int fd : inherit) ::fcntl(fd, F_SETFD, 0);
      ::execl(binary.c_str(), "criu", "swrk", fd_arg.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return Swrk(std::move(ours), pid);
  }

  Swrk(Swrk&& other) noexcept : sock_(std::move(other.sock_)), pid_(std::exchange(other.pid_, -1)) {}
  Swrk& operator=(Swrk&&) = delete;
  ~Swrk() {
    sock_.reset();
    if (pid_ > 0) {
      int status;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
    }
  }

  Status Send(const criu_req& req) {
    std::string bytes;
    if (!req.SerializeToString(&bytes)) return Status(Code::kInternal, "serialize criu request");
    if (::send(sock_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size()))
      return ErrnoStatus("send request to criu");
    return Status::Ok();
  }

  StatusOr<criu_resp> Receive() {
    std::string buf(kMaxResponseBytes, '\0');
    ssize_t n;
    do {
      n = ::recv(sock_.get(), buf.data(), buf.size(), MSG_TRUNC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return ErrnoStatus("receive from criu");
    if (n == 0) return Status(Code::kCriu, "criu exited without answering (is " + CriuBinary() + " CRIU >= 4.2?)");
    if (static_cast<size_t>(n) > buf.size()) return Status(Code::kCriu, "criu answer too large");
    criu_resp resp;
    if (!resp.ParseFromArray(buf.data(), static_cast<int>(n))) return Status(Code::kCriu, "unparsable answer from criu");
    return resp;
  }

 private:
  Swrk(UniqueFd sock, pid_t pid) : sock_(std::move(sock)), pid_(pid) {}
  UniqueFd sock_;
  pid_t pid_ = -1;
};

std::string LogPath(int work_dir_fd, const std::string& log_file) {
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", work_dir_fd);
  char target[4096];
  ssize_t n = ::readlink(link, target, sizeof target - 1);
  if (n <= 0) return log_file;
  return std::string(target, static_cast<size_t>(n)) + "/" + log_file;
}

// One line for the user: what failed, CRIU's own error lines (without their timestamp and
// source prefix), and where the full log is.
Status Failure(const char* what, const criu_resp& resp, int work_dir_fd, const std::string& log_file) {
  const std::string log = LogPath(work_dir_fd, log_file);
  std::string lines = CriuErrorLines(log);
  if (lines.empty() && resp.has_cr_errmsg()) lines = resp.cr_errmsg();
  std::string msg = std::string("criu ") + what + " failed";
  if (!lines.empty()) msg += ": " + lines;
  msg += " (CRIU log: " + log + ")";
  return Status(Code::kCriu, msg);
}

void CommonOptions(criu_opts* opts, int images_dir_fd, int work_dir_fd, const std::string& log_file) {
  opts->set_images_dir_fd(images_dir_fd);
  opts->set_work_dir_fd(work_dir_fd);
  opts->set_log_file(log_file);
  opts->set_log_level(kCriuLogLevel);
  // Jobs may hold TCP connections: dump them, and lock the network with nftables (the
  // iptables lock needs a binary this system lacks).
  opts->set_tcp_established(true);
  opts->set_network_lock(criu_network_lock_method::NFTABLES);
  opts->set_ext_unix_sk(true);
  opts->set_file_locks(true);
}

}  // namespace

std::string CriuBinary() {
  const char* env = std::getenv("LAZARUS_CRIU");
  return env && *env ? env : LAZARUS_CRIU_BINARY;
}

std::string CriuErrorLines(const std::string& log_path, size_t max_lines) {
  std::ifstream in(log_path);
  std::deque<std::string> errors, tail;
  std::string line;
  while (std::getline(in, line)) {
    // "rlimit: Can't setup RLIMIT_NOFILE" appears in every log here and is harmless.
    if (line.find("RLIMIT_NOFILE") != std::string::npos) continue;
    // "(00.029540) Error (criu/cr-restore.c:1237): Can't fork for 7038: File exists"
    auto error = line.find("Error (");
    if (error != std::string::npos) {
      auto text = line.find("): ", error);
      errors.push_back(text == std::string::npos ? line.substr(error) : line.substr(text + 3));
      if (errors.size() > max_lines) errors.pop_front();
    }
    tail.push_back(line);
    if (tail.size() > 2) tail.pop_front();
  }
  const auto& pick = errors.empty() ? tail : errors;
  std::string out;
  for (const auto& l : pick) out += (out.empty() ? "" : "; ") + l;
  return out;
}

Status CriuDump(const DumpOptions& options) {
  auto swrk = Swrk::Start({options.images_dir_fd, options.work_dir_fd});
  if (!swrk.ok()) return swrk.status();
  criu_req req;
  req.set_type(criu_req_type::DUMP);
  criu_opts* opts = req.mutable_opts();
  CommonOptions(opts, options.images_dir_fd, options.work_dir_fd, options.log_file);
  opts->set_pid(options.pid);
  opts->set_leave_running(options.leave_running);
  opts->set_shell_job(options.shell_job);
  opts->set_notify_scripts(static_cast<bool>(options.notify));
  LAZARUS_RETURN_IF_ERROR(swrk->Send(req));
  for (;;) {
    auto resp = swrk->Receive();
    if (!resp.ok()) return resp.status().Context("criu dump of pid " + std::to_string(options.pid));
    if (resp->type() == criu_req_type::NOTIFY) {
      Status st = options.notify(resp->notify().script(), resp->notify().pid());
      criu_req ack;
      ack.set_type(criu_req_type::NOTIFY);
      ack.set_notify_success(st.ok());
      LAZARUS_RETURN_IF_ERROR(swrk->Send(ack));
      if (!st.ok()) return st.Context("during criu dump (" + resp->notify().script() + ")");
      continue;
    }
    if (!resp->success()) return Failure("dump", *resp, options.work_dir_fd, options.log_file);
    return Status::Ok();
  }
}

StatusOr<pid_t> CriuRestore(const RestoreOptions& options) {
  std::vector<int> inherit{options.images_dir_fd, options.work_dir_fd};
  for (const auto& [key, fd] : options.inherit_fds) inherit.push_back(fd);
  auto swrk = Swrk::Start(inherit);
  if (!swrk.ok()) return swrk.status();
  criu_req req;
  req.set_type(criu_req_type::RESTORE);
  criu_opts* opts = req.mutable_opts();
  CommonOptions(opts, options.images_dir_fd, options.work_dir_fd, options.log_file);
  // The restored tree becomes our child, so we reap it and keep its exit status.
  opts->set_rst_sibling(true);
  // After a crash the peers of its TCP connections saw them die: bring them back closed,
  // so the program's own reconnect logic runs.
  opts->set_tcp_close(true);
  opts->set_shell_job(options.shell_job);
  for (const auto& [key, fd] : options.inherit_fds) {
    auto* entry = opts->add_inherit_fd();
    entry->set_key(key);
    entry->set_fd(fd);
  }
  LAZARUS_RETURN_IF_ERROR(swrk->Send(req));
  auto resp = swrk->Receive();
  if (!resp.ok()) return resp.status().Context("criu restore");
  if (!resp->success() || !resp->has_restore())
    return Failure("restore", *resp, options.work_dir_fd, options.log_file);
  return static_cast<pid_t>(resp->restore().pid());
}

StatusOr<std::string> CriuVersion() {
  auto swrk = Swrk::Start({});
  if (!swrk.ok()) return swrk.status();
  criu_req req;
  req.set_type(criu_req_type::VERSION);
  LAZARUS_RETURN_IF_ERROR(swrk->Send(req));
  auto resp = swrk->Receive();
  if (!resp.ok()) return resp.status();
  if (!resp->success() || !resp->has_version()) return Status(Code::kCriu, "criu did not report its version");
  const auto& v = resp->version();
  std::string out = std::to_string(v.major_number()) + "." + std::to_string(v.minor_number());
  if (v.has_sublevel()) out += "." + std::to_string(v.sublevel());
  return out;
}

}  // namespace lazarus::snapshot
