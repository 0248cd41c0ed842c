// lazarusd: the Lazarus daemon.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>

#include <utility>  // Boost 1.74 asio uses std::exchange without including it
#include <boost/asio.hpp>
#include <boost/program_options.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include "common/fs_util.h"
#include "common/unique_fd.h"
#include "daemon/api_server.h"
#include "daemon/job_manager.h"

namespace po = boost::program_options;

namespace lazarus {
namespace {

constexpr const char* kDefaultStateDir = "/var/lib/lazarus";
constexpr const char* kDefaultSocket = "/run/lazarus/lazarusd.sock";

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "lazarusd: error: " << message << "\n";
  std::exit(1);
}

// The lock file names the daemon holding it, for the error a second daemon prints.
bool RecordPid(int fd) {
  std::string pid = std::to_string(::getpid()) + "\n";
  return ::ftruncate(fd, 0) == 0 && ::pwrite(fd, pid.data(), pid.size(), 0) >= 0;
}

// One daemon per state directory: an flock held for the daemon's lifetime.
UniqueFd LockStateDir(const std::string& state_dir) {
  const std::string path = state_dir + "/lazarusd.lock";
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) Die("cannot write state directory " + state_dir + ": " + ErrnoStatus("open " + path).message());
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    auto owner = ReadFile(path, 64);
    std::string pid = owner.ok() ? owner.value() : "";
    while (!pid.empty() && pid.back() == '\n') pid.pop_back();
    Die("another lazarusd" + (pid.empty() ? std::string() : " (pid " + pid + ")") + " is using state directory " +
        state_dir);
  }
  if (!RecordPid(fd.get()))
    Die("cannot write state directory " + state_dir + ": " + ErrnoStatus("write " + path).message());
  return fd;
}

std::string BinDir() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "/usr/local/bin" : self.parent_path().string();
}

int Main(int argc, char** argv) {
  std::string state_dir, socket_path, staging_dir, log_level;
  bool foreground = false;
  po::options_description options("Usage: lazarusd [OPTIONS]\n\nThe Lazarus daemon: runs jobs, snapshots them with CRIU, restores them.\n\nOptions");
  options.add_options()
      ("help,h", "show this help")
      ("state-dir", po::value(&state_dir)->default_value(kDefaultStateDir), "where jobs, snapshots and logs live")
      ("socket", po::value(&socket_path)->default_value(kDefaultSocket), "the API socket")
      ("staging-dir", po::value(&staging_dir),
       "where CRIU's images wait between dump and ingest, and for a restore; tmpfs, as large as the largest "
       "job's memory (default /dev/shm/lazarus/ID, ID derived from the state directory)")
      ("foreground", po::bool_switch(&foreground), "stay in the foreground and log to stderr (otherwise log to STATE_DIR/lazarusd.log)")
      ("log-level", po::value(&log_level)->default_value("info"), "trace, debug, info, warn, error");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(options).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "lazarusd: error: " << e.what() << "\n" << options << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << options << "\n";
    return 0;
  }
  if (::geteuid() != 0) Die("must run as root (CRIU needs it)");

  state_dir = std::filesystem::absolute(state_dir).lexically_normal().string();
  socket_path = std::filesystem::absolute(socket_path).lexically_normal().string();
  if (staging_dir.empty()) {
    // One staging area per state directory: two daemons never clear each other's.
    char id[17];
    std::snprintf(id, sizeof id, "%016zx", std::hash<std::string>{}(state_dir));
    staging_dir = std::string("/dev/shm/lazarus/") + id;
  }
  staging_dir = std::filesystem::absolute(staging_dir).lexically_normal().string();
  if (Status st = MakeDirs(state_dir, 0700); !st.ok()) Die("cannot use state directory " + state_dir + ": " + st.message());
  UniqueFd lock = LockStateDir(state_dir);

  if (!foreground) {
    auto logger = spdlog::basic_logger_mt("lazarusd", state_dir + "/lazarusd.log");
    spdlog::set_default_logger(logger);
    spdlog::flush_every(std::chrono::seconds(1));
  }
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::flush_on(spdlog::level::info);

  boost::asio::io_context io;
  JobManager jobs({state_dir, BinDir(), socket_path, staging_dir});
  ApiServer server(io, jobs);
  if (Status st = server.Listen(socket_path); !st.ok()) Die(st.message());
  if (Status st = jobs.Load(); !st.ok()) {
    ::unlink(socket_path.c_str());
    Die(st.message());
  }

  if (!foreground) {
    // The parent returns once the socket is ready, so `lazarusd && lazarus list` works.
    io.notify_fork(boost::asio::io_context::fork_prepare);
    if (::daemon(0, 0) != 0) Die("daemon(): " + ErrnoStatus("daemon").message());
    io.notify_fork(boost::asio::io_context::fork_child);
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) Die("lost the state directory lock");
    if (!RecordPid(lock.get())) spdlog::warn("cannot record pid in lock file");
  }
  ::signal(SIGPIPE, SIG_IGN);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int signal) {
    spdlog::info("signal {}: stopping (jobs keep running)", signal);
    io.stop();
  });
  // Jobs whose processes end are noticed here.
  boost::asio::steady_timer poll_timer(io);
  std::function<void()> schedule_poll = [&] {
    poll_timer.expires_after(std::chrono::milliseconds(200));
    poll_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      jobs.Poll();
      schedule_poll();
    });
  };
  schedule_poll();
  server.Start();
  spdlog::info("lazarusd ready: state {}, socket {}", state_dir, socket_path);
  io.run();
  server.Drain();
  jobs.Drain();
  // Nothing is staged between operations: leave no empty staging area on tmpfs.
  (void)RemoveTree(staging_dir);
  ::unlink(socket_path.c_str());
  return 0;
}

}  // namespace
}  // namespace lazarus

int main(int argc, char** argv) { return lazarus::Main(argc, argv); }
