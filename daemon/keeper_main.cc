// lazarus-keeper: parents one incarnation of one job.
//
//   lazarus-keeper run     --job-dir DIR --incarnation N --init PATH --cwd DIR -- CMD ARGS...
//   lazarus-keeper restore --job-dir DIR --incarnation N --snapshot-dir SNAP --log NAME
//
// `run` starts lazarus-init as PID 1 of a new PID namespace with CMD below it; `restore`
// has CRIU restore a snapshot as its child (rst_sibling). Either way it reports on fd 3
// (keeper_protocol.h), then waits for the job's root and leaves its exit status in the
// job directory, so that a daemon killed meanwhile loses nothing.
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "common/fs_util.h"
#include "common/proc_util.h"
#include "common/record_file.h"
#include "common/unique_fd.h"
#include "daemon/keeper_protocol.h"
#include "daemon/records.pb.h"
#include "snapshot/criu_client.h"
#include "snapshot/open_files.h"

namespace lazarus::keeper {
namespace {

struct Args {
  std::string mode, job_dir, init, cwd, snapshot_dir, log = "restore.log";
  std::vector<std::pair<std::string, std::string>> redirect_dirs;  // FROM=TO: a clone's copies
  uint32_t incarnation = 1;
  uid_t uid = 0;  // the job's owner: the job runs with its uid and gid, never as root for a user
  gid_t gid = 0;
  std::vector<std::string> command;
};

void Report(const std::string& text) {
  std::string rest = text;
  while (!rest.empty()) {
    ssize_t n = ::write(kResultFd, rest.data(), rest.size());
    if (n <= 0) break;
    rest.erase(0, static_cast<size_t>(n));
  }
  ::close(kResultFd);
}

[[noreturn]] void Fail(const std::string& message) {
  Report("error\n" + message);
  std::exit(1);
}

Args Parse(int argc, char** argv) {
  Args args;
  if (argc < 2) Fail("lazarus-keeper: missing mode");
  args.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Fail("lazarus-keeper: " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--") {
      args.command.assign(argv + i + 1, argv + argc);
      break;
    }
    if (a == "--job-dir") args.job_dir = next();
    else if (a == "--init") args.init = next();
    else if (a == "--cwd") args.cwd = next();
    else if (a == "--snapshot-dir") args.snapshot_dir = next();
    else if (a == "--log") args.log = next();
    else if (a == "--redirect-dir") {
      std::string v = next();
      auto eq = v.find('=');
      if (eq == std::string::npos) Fail("lazarus-keeper: --redirect-dir takes FROM=TO");
      args.redirect_dirs.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    }
    else if (a == "--uid") args.uid = static_cast<uid_t>(std::stoul(next()));
    else if (a == "--gid") args.gid = static_cast<gid_t>(std::stoul(next()));
    else if (a == "--incarnation") args.incarnation = static_cast<uint32_t>(std::stoul(next()));
    else Fail("lazarus-keeper: unknown argument " + a);
  }
  if (args.job_dir.empty()) Fail("lazarus-keeper: --job-dir is required");
  return args;
}

UniqueFd OpenOutput(const std::string& path, uid_t uid, gid_t gid) {
  // O_APPEND: CRIU does not check the size of append-only files, so output written
  // after a snapshot never blocks its restore.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!fd) Fail("open " + path + ": " + std::strerror(errno));
  if (::fchown(fd.get(), uid, gid) != 0) Fail("chown " + path + ": " + std::strerror(errno));
  return fd;
}

void ReportStarted(pid_t root) {
  auto self = ProcessStartTime(::getpid());
  auto root_start = ProcessStartTime(root);
  Report("ok " + std::to_string(::getpid()) + " " + std::to_string(self.value_or(0)) + " " + std::to_string(root) +
         " " + std::to_string(root_start.value_or(0)) + "\n");
}

pid_t StartJob(const Args& args) {
  if (args.command.empty()) Fail("no command to run");
  UniqueFd out = OpenOutput(args.job_dir + "/" + kStdoutFile, args.uid, args.gid);
  UniqueFd err = OpenOutput(args.job_dir + "/" + kStderrFile, args.uid, args.gid);
  UniqueFd in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  // Every job in a PID namespace of its own: its PIDs never clash with the host's on
  // restore, and one snapshot can be restored twice at once.
  if (::unshare(CLONE_NEWPID) != 0) Fail(std::string("unshare(CLONE_NEWPID): ") + std::strerror(errno));
  std::vector<std::string> argv{args.init, "--uid", std::to_string(args.uid), "--gid", std::to_string(args.gid)};
  if (!args.cwd.empty()) argv.insert(argv.end(), {"--cwd", args.cwd});
  argv.push_back("--");
  argv.insert(argv.end(), args.command.begin(), args.command.end());
  std::vector<char*> c_argv;
  for (auto& s : argv) c_argv.push_back(s.data());
  c_argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) Fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(in.get(), 0);
    ::dup2(out.get(), 1);
    ::dup2(err.get(), 2);
    ::close_range(3, ~0U, 0);
    ::execv(c_argv[0], c_argv.data());
    std::fprintf(stderr, "lazarus: cannot run %s: %s\n", c_argv[0], std::strerror(errno));
    ::_exit(127);
  }
  return pid;
}

pid_t RestoreJob(const Args& args) {
  records::SnapshotRecord record;
  Status st = ReadRecordFile(args.snapshot_dir + "/snapshot.rec", &record);
  if (!st.ok()) Fail("read snapshot record: " + st.message());
  UniqueFd images(::open((args.snapshot_dir + "/images").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!images) Fail("open " + args.snapshot_dir + "/images: " + std::strerror(errno));
  UniqueFd work(::open(args.snapshot_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!work) Fail("open " + args.snapshot_dir + ": " + std::strerror(errno));

  // The job's stdout and stderr at dump time go to this job's files (a clone writes its own).
  std::map<std::string, std::string> redirect;
  const std::string own[] = {args.job_dir + "/" + kStdoutFile, args.job_dir + "/" + kStderrFile};
  if (record.stdio_paths_size() > 0)
    for (const auto& path : own) (void)OpenOutput(path, args.uid, args.gid);  // created with its owner
  for (int i = 0; i < record.stdio_paths_size() && i < 2; ++i) redirect[record.stdio_paths(i)] = own[i];
  auto files = snapshot::ReopenForRestore(record.open_files(), redirect);
  if (!files.ok()) Fail(files.status().message());

  // Files of a directory the job used (its effect log) that a clone has copies of: CRIU
  // opens, and maps, the copies in their place.
  std::vector<UniqueFd> copies;
  for (const auto& [from, to] : args.redirect_dirs) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(to, ec)) {
      if (!entry.is_regular_file()) continue;
      UniqueFd fd(::open(entry.path().c_str(), O_RDWR | O_CLOEXEC));
      if (!fd) Fail("open " + entry.path().string() + ": " + std::strerror(errno));
      (*files).push_back({(from + "/" + entry.path().filename().string()).substr(1), std::move(fd)});
    }
    if (ec) Fail("read " + to + ": " + ec.message());
  }

  snapshot::RestoreOptions options;
  options.images_dir_fd = images.get();
  options.work_dir_fd = work.get();
  options.log_file = args.log;
  options.shell_job = record.shell_job();
  for (const auto& f : *files) options.inherit_fds.emplace_back(f.key, f.fd.get());
  auto pid = snapshot::CriuRestore(options);
  if (!pid.ok()) Fail(pid.status().message());
  return *pid;
}

int Main(int argc, char** argv) {
  Args args = Parse(argc, argv);
  pid_t root = 0;
  if (args.mode == "run") root = StartJob(args);
  else if (args.mode == "restore") root = RestoreJob(args);
  else Fail("lazarus-keeper: unknown mode " + args.mode);
  ReportStarted(root);

  int status = 0;
  while (::waitpid(root, &status, 0) < 0) {
    if (errno != EINTR) return 1;
  }
  Status st = WriteFileAtomic(args.job_dir + "/" + kExitStatusFile,
                              std::to_string(args.incarnation) + " " + std::to_string(status) + "\n");
  return st.ok() ? 0 : 1;
}

}  // namespace
}  // namespace lazarus::keeper

int main(int argc, char** argv) { return lazarus::keeper::Main(argc, argv); }
