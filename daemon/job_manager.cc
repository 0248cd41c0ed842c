#include "daemon/job_manager.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/fs_util.h"
#include "common/proc_util.h"
#include "common/record_file.h"
#include "common/unique_fd.h"
#include "daemon/keeper_launch.h"
#include "effectlog/reader.h"
#include "daemon/keeper_protocol.h"
#include "snapshot/criu_client.h"
#include "snapshot/open_files.h"
#include "snapshot/retention.h"

namespace lazarus {
namespace fs = std::filesystem;
using records::JobRecord;
using records::JobState;

namespace {

constexpr const char* kJobRecordFile = "job.rec";
constexpr auto kRestoreTimeout = std::chrono::seconds(120);
constexpr auto kRunTimeout = std::chrono::seconds(30);
constexpr uint32_t kDefaultKeepLast = 3;
constexpr const char* kShimLibrary = "liblazarus-preload.so";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string StateName(JobState state) {
  std::string name = records::JobState_Name(state);
  for (auto& c : name) c = static_cast<char>(std::tolower(c));
  return name;
}

bool IsLive(JobState state) {
  return state == records::STARTING || state == records::RUNNING || state == records::SNAPSHOTTING ||
         state == records::RECOVERING;
}

std::string JobLabel(const JobRecord& r) {
  return r.name().empty() ? r.id() : r.name() + " (" + r.id() + ")";
}

// The path `command` would execute, resolved the way execvp will in the job.
StatusOr<std::string> ResolveCommand(const std::string& command, const std::string& cwd,
                                     const google::protobuf::RepeatedPtrField<std::string>& env) {
  auto executable = [](const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
  };
  if (command.empty()) return Status(Code::kInvalidArgument, "empty command");
  if (command.find('/') != std::string::npos) {
    std::string path = command[0] == '/' ? command : cwd + "/" + command;
    if (!executable(path)) return Status(Code::kNotFound, "command not found or not executable: " + command);
    return path;
  }
  std::string search = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : env)
    if (e.rfind("PATH=", 0) == 0) search = e.substr(5);
  size_t start = 0;
  while (start <= search.size()) {
    size_t end = search.find(':', start);
    if (end == std::string::npos) end = search.size();
    std::string dir = search.substr(start, end - start);
    if (dir.empty()) dir = cwd;
    if (dir[0] != '/') dir = cwd + "/" + dir;
    if (executable(dir + "/" + command)) return dir + "/" + command;
    start = end + 1;
  }
  return Status(Code::kNotFound, "command not found: " + command);
}

// CRIU's "Can't fork for 1234: File exists" means that PID is taken on this host.
std::string ExplainRestoreError(const std::string& message) {
  static const std::regex clash("Can't fork for ([0-9]+): File exists");
  std::smatch m;
  if (std::regex_search(message, m, clash))
    return "PID " + m[1].str() +
           " of the snapshot is in use on this host (an attached job has no PID namespace of its own: "
           "its restore needs every PID of its tree free); " + message;
  return message;
}

// Real, effective, saved and file-system ids of a process, from /proc/PID/status.
std::vector<unsigned> StatusIds(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream fields(line.substr(key.size() + 1));
    std::vector<unsigned> ids;
    unsigned id;
    while (fields >> id) ids.push_back(id);
    return ids;
  }
  return {};
}

uid_t ProcessUid(pid_t pid) {
  auto ids = StatusIds(pid, "Uid");
  return ids.empty() ? 0 : ids[0];
}
gid_t ProcessGid(pid_t pid) {
  auto ids = StatusIds(pid, "Gid");
  return ids.empty() ? 0 : ids[0];
}

// A user may adopt only a process that is wholly its own (as ptrace would require).
bool OwnedBy(pid_t pid, const Caller& caller) {
  auto uids = StatusIds(pid, "Uid");
  auto gids = StatusIds(pid, "Gid");
  if (uids.size() != 4 || gids.size() != 4) return false;
  for (unsigned u : uids)
    if (u != caller.uid) return false;
  for (unsigned g : gids)
    if (g != caller.gid) return false;
  return true;
}

// A copy of a job's effect log for a clone (plain files: control and segments), owned
// like the original.
Status CopyLog(const std::string& from, const std::string& to) {
  LAZARUS_RETURN_IF_ERROR(MakeDirs(to, 0700));
  struct stat owner {};
  if (::stat(from.c_str(), &owner) != 0) return ErrnoStatus("stat " + from);
  if (::chown(to.c_str(), owner.st_uid, owner.st_gid) != 0) return ErrnoStatus("chown " + to);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(from, ec)) {
    if (!entry.is_regular_file()) continue;
    const std::string copy = to + "/" + entry.path().filename().string();
    fs::copy_file(entry.path(), copy, fs::copy_options::overwrite_existing, ec);
    if (ec) return Status(Code::kIo, "copy " + entry.path().string() + ": " + ec.message());
    if (::chown(copy.c_str(), owner.st_uid, owner.st_gid) != 0) return ErrnoStatus("chown " + copy);
  }
  if (ec) return Status(Code::kIo, "read " + from + ": " + ec.message());
  return FsyncTree(to);
}

std::string ReadCmdline(pid_t pid, std::vector<std::string>* argv) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string arg;
  while (std::getline(in, arg, '\0')) argv->push_back(arg);
  return argv->empty() ? "" : (*argv)[0];
}

}  // namespace

JobManager::JobManager(DaemonConfig config) : config_(std::move(config)) {}

std::string JobManager::JobDir(const std::string& id) const { return config_.state_dir + "/jobs/" + id; }
std::string JobManager::LogDir(const std::string& id) const { return JobDir(id) + "/log"; }

std::string JobManager::SnapshotLogDir(const std::string& id, uint32_t snapshot) const {
  return JobDir(id) + "/snapshots/" + std::to_string(snapshot);
}

Status JobManager::Load() {
  // Traversable, not listable: users reach their own job's output files by name.
  LAZARUS_RETURN_IF_ERROR(MakeDirs(config_.state_dir + "/jobs", 0711));
  for (const auto& dir : {config_.state_dir, config_.state_dir + "/jobs"})
    if (::chmod(dir.c_str(), 0711) != 0) return ErrnoStatus("chmod " + dir);
  auto opened = store::ChunkStore::Open(config_.state_dir + "/store");
  if (!opened.ok()) return opened.status().Context("open the snapshot store");
  store_.emplace(std::move(*opened));
  // Staging areas of operations a previous daemon did not finish.
  LAZARUS_RETURN_IF_ERROR(RemoveTree(config_.staging_dir));
  LAZARUS_RETURN_IF_ERROR(MakeDirs(config_.staging_dir, 0700).Context("staging directory"));
  auto version = snapshot::CriuVersion();
  if (!version.ok()) return version.status().Context("ask " + snapshot::CriuBinary() + " for its version");
  criu_version_ = *version;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(config_.state_dir + "/jobs", ec)) {
    const std::string id = entry.path().filename().string();
    auto job = std::make_shared<Job>();
    Status st = ReadRecordFile(entry.path().string() + "/" + kJobRecordFile, &job->record);
    if (!st.ok()) {
      // A job directory without a whole record is a `run` that died before its first save.
      spdlog::warn("ignoring job directory {}: {}", entry.path().string(), st.message());
      continue;
    }
    if (!job->record.durability().empty()) {
      auto log = JobLog::Open(LogDir(id));
      if (log.ok()) {
        job->log = std::move(*log);
        job->snapshot_requests_seen = job->log->control().snapshot_requests();
      }
      else spdlog::error("job {}: {}", id, log.status().message());
    }
    jobs_[id] = job;
    JobRecord r = job->record;
    // An operation the previous daemon did not finish: judge by what still runs.
    if (r.state() == records::SNAPSHOTTING || r.state() == records::STARTING || r.state() == records::RECOVERING) {
      r.set_state(Alive(r) ? records::RUNNING : records::CRASHED);
      if (r.state() == records::CRASHED) r.set_last_error("the daemon stopped during an operation on this job");
      (void)Save(*job, r);
    }
    Refresh(*job);
    if (job->log && job->record.state() == records::RUNNING) job->log->StartKeeping();
    spdlog::info("job {}: {}{}", JobLabel(job->record), StateName(job->record.state()),
                 job->record.state() == records::RUNNING ? " (re-adopted, pid " + std::to_string(job->record.root().pid()) + ")" : "");
  }
  return Status::Ok();
}

Status JobManager::Save(Job& job, const JobRecord& record) {
  Status st = WriteRecordFile(JobDir(record.id()) + "/" + kJobRecordFile, record);
  if (!st.ok()) return st.Context("save job record");
  std::lock_guard lock(mu_);
  job.record = record;
  return Status::Ok();
}

JobRecord JobManager::Snapshot(const Job& job) {
  std::lock_guard lock(mu_);
  return job.record;
}

bool JobManager::Alive(const JobRecord& r) const {
  if (r.has_keeper() && r.keeper().pid() > 0 && ProcessAlive(r.keeper().pid(), r.keeper().start_time())) return true;
  return ProcessAlive(r.root().pid(), r.root().start_time());
}

void JobManager::Refresh(Job& job) {
  JobRecord r = Snapshot(job);
  if (r.state() != records::RUNNING || Alive(r)) return;
  // The root ended: the keeper left its wait status (unless it was killed itself, or the
  // job was attached and has no keeper).
  std::string exit_status = "unknown (not a child of Lazarus)";
  bool clean_exit = false;
  if (r.keeper().pid() > 0) {
    auto text = ReadFile(JobDir(r.id()) + "/" + keeper::kExitStatusFile, 4096);
    uint32_t incarnation = 0;
    int wstatus = 0;
    if (text.ok() && std::sscanf(text->c_str(), "%u %d", &incarnation, &wstatus) == 2 &&
        incarnation == r.incarnation()) {
      exit_status = DescribeWaitStatus(wstatus);
      clean_exit = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    } else {
      exit_status = "unknown (the keeper left no exit status)";
    }
  }
  r.set_exit_status(r.kill_requested() ? "killed by lazarus kill" : exit_status);
  r.set_state(r.kill_requested() || clean_exit ? records::EXITED : records::CRASHED);
  spdlog::info("job {}: {} ({})", JobLabel(r), StateName(r.state()), exit_status);
  if (job.log) job.log->StopKeeping();
  Status st = Save(job, r);
  if (!st.ok()) spdlog::error("job {}: {}", r.id(), st.message());
}

void JobManager::Poll() {
  std::vector<std::shared_ptr<Job>> jobs;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, job] : jobs_) jobs.push_back(job);
  }
  for (auto& job : jobs) {
    // A job busy with an operation is refreshed by that operation.
    std::unique_lock op(job->op, std::try_to_lock);
    if (!op.owns_lock()) continue;
    Refresh(*job);
    if (SnapshotDue(*job)) {
      // Off the polling thread: a dump takes as long as the job is large. The job's own
      // lock makes it one snapshot at a time per job.
      ++in_flight_;
      op.unlock();
      std::thread([this, job] {
        std::unique_lock op(job->op, std::try_to_lock);
        if (op.owns_lock() && SnapshotDue(*job)) {
          // A request from the job (liblazarus) is served by this snapshot too.
          const uint64_t requests = job->log ? job->log->control().snapshot_requests() : 0;
          auto taken = CheckpointLocked(*job, /*periodic=*/true);
          job->snapshot_requests_seen = requests;
          if (!taken.ok()) spdlog::warn("periodic snapshot: {}", taken.status().message());
        }
        --in_flight_;
      }).detach();
    }
  }
}

bool JobManager::SnapshotDue(Job& job) {
  const JobRecord r = Snapshot(job);
  if (r.state() != records::RUNNING) return false;
  if (job.log && job.log->control().snapshot_requests() > job.snapshot_requests_seen) return true;
  if (r.snapshot_interval_s() == 0) return false;
  const int64_t last = std::max(r.last_periodic_ms(), r.started_unix_ms());
  return NowMs() - last >= int64_t{r.snapshot_interval_s()} * 1000;
}

void JobManager::Drain() {
  for (int i = 0; i < 600 && in_flight_ > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

namespace {

Status ValidatePolicy(uint64_t interval_s, uint64_t keep_last, uint64_t keep_every_s) {
  constexpr uint64_t kMaxSeconds = 366ull * 24 * 3600;
  if (interval_s > kMaxSeconds) return Status(Code::kInvalidArgument, "--interval is longer than a year");
  if (keep_last > 10000) return Status(Code::kInvalidArgument, "--keep above 10000");
  if (keep_every_s > kMaxSeconds) return Status(Code::kInvalidArgument, "--keep-every is longer than a year");
  return Status::Ok();
}

void CopyPolicy(const JobRecord& r, api::SnapshotPolicy* policy) {
  policy->set_interval_s(r.snapshot_interval_s());
  policy->set_keep_last(r.keep_last() ? r.keep_last() : kDefaultKeepLast);
  policy->set_keep_every_s(r.keep_every_s());
}

}  // namespace

StatusOr<api::JobInfo> JobManager::SetPolicy(const api::PolicyRequest& request, const Caller& caller) {
  auto found = Find(request.job(), caller);
  if (!found.ok()) return found.status();
  Job& job = **found;
  std::lock_guard op(job.op);
  JobRecord r = Snapshot(job);
  if (request.has_interval_s()) r.set_snapshot_interval_s(request.interval_s());
  if (request.has_keep_last()) r.set_keep_last(request.keep_last());
  if (request.has_keep_every_s()) r.set_keep_every_s(request.keep_every_s());
  LAZARUS_RETURN_IF_ERROR(ValidatePolicy(r.snapshot_interval_s(), r.keep_last(), r.keep_every_s()));
  LAZARUS_RETURN_IF_ERROR(Save(job, r));
  spdlog::info("job {}: snapshot every {} s, keep last {}, keep one per {} s", JobLabel(r), r.snapshot_interval_s(),
               r.keep_last() ? r.keep_last() : kDefaultKeepLast, r.keep_every_s());
  return Info(r);
}

api::JobInfo JobManager::Info(const JobRecord& r) const {
  api::JobInfo info;
  info.set_id(r.id());
  info.set_name(r.name());
  info.set_state(StateName(r.state()));
  const bool live = IsLive(r.state());
  info.set_pid(live ? r.root().pid() : 0);
  info.set_keeper_pid(live ? r.keeper().pid() : 0);
  if (live && r.started_unix_ms() > 0) info.set_uptime_ms(NowMs() - r.started_unix_ms());
  auto snapshots = store_->ListIds(r.id());
  info.set_snapshot_count(static_cast<uint32_t>(snapshots.size()));
  if (!snapshots.empty()) info.set_latest_snapshot(snapshots.back());
  info.set_last_error(r.last_error());
  info.set_exit_status(r.exit_status());
  for (const auto& a : r.argv()) info.add_argv(a);
  info.set_job_dir(JobDir(r.id()));
  if (!r.attached()) {
    info.set_stdout_path(JobDir(r.id()) + "/" + keeper::kStdoutFile);
    info.set_stderr_path(JobDir(r.id()) + "/" + keeper::kStderrFile);
  }
  info.set_attached(r.attached());
  info.set_incarnation(r.incarnation());
  info.set_restored_from(r.restored_from());
  CopyPolicy(r, info.mutable_policy());
  info.set_durability(r.durability());
  info.set_shim(r.shim());
  return info;
}

StatusOr<std::shared_ptr<JobManager::Job>> JobManager::Find(const std::string& ref, const Caller& caller) {
  if (ref.empty()) return Status(Code::kInvalidArgument, "no job given");
  std::lock_guard lock(mu_);
  std::shared_ptr<Job> found;
  if (auto it = jobs_.find(ref); it != jobs_.end()) found = it->second;
  for (auto& [id, job] : jobs_) {
    if (found) break;
    // Names are per user: another user's job of the same name is not this caller's.
    if (job->record.name() == ref && (caller.is_root() || job->record.uid() == caller.uid)) found = job;
  }
  if (!found) return Status(Code::kNotFound, "no job " + ref);
  if (!caller.is_root() && found->record.uid() != caller.uid)
    return Status(Code::kPermissionDenied, "permission denied: job " + ref + " belongs to another user");
  return found;
}

std::string JobManager::NewJobId() {
  static std::mutex rng_mu;
  static std::mt19937_64 rng{std::random_device{}()};
  for (;;) {
    char id[9];
    {
      std::lock_guard lock(rng_mu);
      std::snprintf(id, sizeof id, "%08x", static_cast<unsigned>(rng()));
    }
    std::lock_guard lock(mu_);
    if (!jobs_.count(id) && !fs::exists(JobDir(id))) return id;
  }
}

Status JobManager::CheckNameFree(const std::string& name, uid_t owner) {
  if (name.empty()) return Status::Ok();
  if (name.find_first_of("/ \t\n") != std::string::npos)
    return Status(Code::kInvalidArgument, "invalid job name '" + name + "': no slashes or spaces");
  std::lock_guard lock(mu_);
  if (jobs_.count(name)) return Status(Code::kAlreadyExists, "job name " + name + " is a job id");
  for (auto& [id, job] : jobs_)
    if (job->record.name() == name && job->record.uid() == owner)
      return Status(Code::kAlreadyExists, "job name " + name + " is taken by job " + id);
  return Status::Ok();
}

StatusOr<std::shared_ptr<JobManager::Job>> JobManager::CreateJob(JobRecord record) {
  const std::string dir = JobDir(record.id());
  // The job directory is traversable (0711) so that the job's user can read its output
  // files by name; snapshots stay root's alone.
  LAZARUS_RETURN_IF_ERROR(MakeDirs(dir + "/snapshots", 0700));
  if (::chmod(dir.c_str(), 0711) != 0) return ErrnoStatus("chmod " + dir);
  auto job = std::make_shared<Job>();
  record.set_created_unix_ms(NowMs());
  Status st = Save(*job, record);
  if (!st.ok()) {
    (void)RemoveTree(dir);
    return st;
  }
  std::lock_guard lock(mu_);
  jobs_[record.id()] = job;
  return job;
}

void JobManager::Forget(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    jobs_.erase(id);
  }
  if (store_) {
    if (Status st = store_->DeleteJob(id); !st.ok() && st.code() != Code::kNotFound) spdlog::error("{}", st.message());
    auto gc = store_->CollectGarbage({.wait = false});
    if (!gc.ok()) spdlog::info("GC after removing job {} postponed: {}", id, gc.status().message());
  }
  Status st = RemoveTree(JobDir(id));
  if (!st.ok()) spdlog::error("{}", st.message());
}

StatusOr<api::JobInfo> JobManager::Run(const api::RunRequest& request, const Caller& caller) {
  if (request.argv().empty()) return Status(Code::kInvalidArgument, "no command given");
  auto resolved = ResolveCommand(request.argv(0), request.cwd(), request.env());
  if (!resolved.ok()) return resolved.status();
  const auto& policy = request.policy();
  LAZARUS_RETURN_IF_ERROR(ValidatePolicy(policy.interval_s(), policy.keep_last(), policy.keep_every_s()));
  LAZARUS_RETURN_IF_ERROR(CheckNameFree(request.name(), caller.uid));
  effectlog::LogOptions log_options;
  if (!request.durability().empty()) {
    auto mode = effectlog::ParseDurabilityMode(request.durability());
    if (!mode) return Status(Code::kInvalidArgument, "unknown durability '" + request.durability() + "': process, group or sync");
    log_options.durability = *mode;
  }
  if (request.group_interval_ms() != 0) {
    if (log_options.durability != effectlog::DurabilityMode::kGroup)
      return Status(Code::kInvalidArgument, "--group-ms only goes with --durability group");
    if (request.group_interval_ms() > 10000) return Status(Code::kInvalidArgument, "--group-ms above 10000");
    log_options.group_interval_ms = request.group_interval_ms();
  }
  const std::string shim = config_.bin_dir + "/" + kShimLibrary;
  const bool use_shim = !request.no_shim() && ::access(shim.c_str(), R_OK) == 0;

  JobRecord r;
  r.set_id(NewJobId());
  r.set_name(request.name());
  r.mutable_argv()->CopyFrom(request.argv());
  r.set_cwd(request.cwd());
  r.mutable_env()->CopyFrom(request.env());
  r.set_state(records::STARTING);
  r.set_incarnation(1);
  r.set_next_snapshot_id(1);
  r.set_uid(caller.uid);
  r.set_gid(caller.gid);
  r.set_snapshot_interval_s(policy.interval_s());
  r.set_keep_last(policy.keep_last());
  r.set_keep_every_s(policy.keep_every_s());
  r.set_durability(effectlog::DurabilityModeName(log_options.durability));
  r.set_group_interval_ms(log_options.group_interval_ms);
  r.set_shim(use_shim);
  auto job = CreateJob(r);
  if (!job.ok()) return job.status();
  std::lock_guard op((*job)->op);
  auto log = JobLog::Create(LogDir(r.id()), log_options, r.uid(), r.gid());
  if (!log.ok()) {
    Forget(r.id());
    return log.status();
  }
  (*job)->log = std::move(*log);

  std::vector<std::string> argv{config_.bin_dir + "/lazarus-keeper", "run", "--job-dir", JobDir(r.id()),
                                "--incarnation", "1", "--init", config_.bin_dir + "/lazarus-init",
                                "--uid", std::to_string(r.uid()), "--gid", std::to_string(r.gid()),
                                "--cwd", request.cwd(), "--"};
  argv.push_back(*resolved);
  argv.insert(argv.end(), request.argv().begin() + 1, request.argv().end());
  // What the client library needs to find its log and the daemon (client-lib/README.md).
  // The caller's own LAZARUS_* variables are dropped (a `lazarus run` from inside a job must
  // not hand the new job that job's log), except the library's options that a user sets.
  auto user_option = [](const std::string& e) {
    return e.rfind("LAZARUS_VERBOSE=", 0) == 0 || e.rfind("LAZARUS_SHIM_IN_DOUBT=", 0) == 0;
  };
  std::vector<std::string> env;
  for (const auto& e : request.env())
    if ((e.rfind("LAZARUS_", 0) != 0 || user_option(e)) && !(use_shim && e.rfind("LD_PRELOAD=", 0) == 0))
      env.push_back(e);
  env.push_back("LAZARUS_JOB=" + r.id());
  env.push_back("LAZARUS_LOG=" + LogDir(r.id()));
  env.push_back("LAZARUS_SOCKET=" + config_.socket_path);
  if (use_shim) env.push_back("LD_PRELOAD=" + shim);
  auto started = LaunchKeeper(argv, env, kRunTimeout);
  if (!started.ok()) {
    Forget(r.id());
    return started.status().Context("start job");
  }
  r.mutable_keeper()->CopyFrom(started->keeper);
  r.mutable_root()->CopyFrom(started->root);
  r.set_started_unix_ms(NowMs());
  r.set_state(records::RUNNING);
  LAZARUS_RETURN_IF_ERROR(Save(**job, r));
  (*job)->log->StartKeeping();
  spdlog::info("job {}: running {} (pid {}, {} log{})", JobLabel(r), request.argv(0), r.root().pid(), r.durability(),
               use_shim ? ", shim" : "");
  return Info(r);
}

StatusOr<api::JobInfo> JobManager::Attach(const api::AttachRequest& request, const Caller& caller) {
  const pid_t pid = request.pid();
  if (pid <= 1) return Status(Code::kInvalidArgument, "cannot attach PID " + std::to_string(pid));
  if (pid == ::getpid()) return Status(Code::kInvalidArgument, "cannot attach the daemon itself");
  auto stat = ReadProcStat(pid);
  if (!stat || stat->state == 'Z') return Status(Code::kNotFound, "no process " + std::to_string(pid));
  if (!caller.is_root() && !OwnedBy(pid, caller))
    return Status(Code::kPermissionDenied, "permission denied: process " + std::to_string(pid) + " is not yours");
  LAZARUS_RETURN_IF_ERROR(CheckNameFree(request.name(), caller.uid));
  {
    std::lock_guard lock(mu_);
    for (auto& [id, job] : jobs_)
      if (IsLive(job->record.state()) && job->record.root().pid() == pid)
        return Status(Code::kAlreadyExists, "process " + std::to_string(pid) + " is already job " + id);
  }
  JobRecord r;
  r.set_id(NewJobId());
  r.set_name(request.name());
  std::vector<std::string> argv;
  ReadCmdline(pid, &argv);
  for (auto& a : argv) r.add_argv(a);
  r.set_attached(true);
  r.set_uid(caller.is_root() ? ProcessUid(pid) : caller.uid);
  r.set_gid(caller.is_root() ? ProcessGid(pid) : caller.gid);
  r.mutable_root()->set_pid(pid);
  r.mutable_root()->set_start_time(stat->start_time);
  r.set_started_unix_ms(NowMs());
  r.set_state(records::RUNNING);
  r.set_incarnation(1);
  r.set_next_snapshot_id(1);
  auto job = CreateJob(r);
  if (!job.ok()) return job.status();
  spdlog::info("job {}: attached pid {}", JobLabel(r), pid);
  return Info(r);
}

StatusOr<api::JobList> JobManager::List(const Caller& caller) {
  Poll();
  std::vector<JobRecord> records;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, job] : jobs_)
      if (caller.is_root() || job->record.uid() == caller.uid) records.push_back(job->record);
  }
  std::sort(records.begin(), records.end(),
            [](const auto& a, const auto& b) { return a.created_unix_ms() < b.created_unix_ms(); });
  api::JobList list;
  for (const auto& r : records) *list.add_jobs() = Info(r);
  return list;
}

StatusOr<api::JobInfo> JobManager::GetStatus(const std::string& ref, const Caller& caller) {
  auto job = Find(ref, caller);
  if (!job.ok()) return job.status();
  std::unique_lock op((*job)->op, std::try_to_lock);
  if (op.owns_lock()) Refresh(**job);
  api::JobInfo info = Info(Snapshot(**job));
  // Replay progress, as the job's library publishes it in the log's control block.
  if (op.owns_lock() && (*job)->log && IsLive(Snapshot(**job).state())) {
    effectlog::ControlBlock* c = (*job)->log->control().block();
    const uint64_t pending = effectlog::Atomic(c->replay_pending).load(std::memory_order_relaxed);
    info.set_replay(pending > 0 ? "replaying" : "live");
    info.set_replay_pending(pending);
    info.set_replay_total(effectlog::Atomic(c->replay_total).load(std::memory_order_relaxed));
    info.set_effects_replayed(effectlog::Atomic(c->effects_replayed).load(std::memory_order_relaxed));
    info.set_effects_in_doubt(effectlog::Atomic(c->effects_in_doubt).load(std::memory_order_relaxed));
  }
  return info;
}

StatusOr<api::SnapshotInfo> JobManager::Checkpoint(const std::string& ref, const Caller& caller) {
  auto found = Find(ref, caller);
  if (!found.ok()) return found.status();
  Job& job = **found;
  std::lock_guard op(job.op);
  return CheckpointLocked(job, /*periodic=*/false);
}

StatusOr<api::SnapshotInfo> JobManager::CheckpointLocked(Job& job, bool periodic) {
  Refresh(job);
  JobRecord r = Snapshot(job);
  if (r.state() != records::RUNNING)
    return Status(Code::kFailedPrecondition, "job " + JobLabel(r) + " is " + StateName(r.state()) +
                                                 ", not running: nothing to checkpoint");
  const uint32_t id = r.next_snapshot_id();
  r.set_next_snapshot_id(id + 1);
  if (periodic) r.set_last_periodic_ms(NowMs());
  r.set_state(records::SNAPSHOTTING);
  LAZARUS_RETURN_IF_ERROR(Save(job, r));

  auto finish = [&](const Status& error) -> Status {
    r.set_state(records::RUNNING);
    r.set_last_error(error.ok() ? "" : error.message());
    Status st = Save(job, r);
    Refresh(job);
    return error.ok() ? st : error;
  };

  // CRIU dumps into tmpfs; the store takes the images in after the job runs again.
  auto staging = MakeStaging(r.id() + "-dump-" + std::to_string(id));
  if (!staging.ok()) return finish(staging.status().Context("stage snapshot"));
  const std::string images_dir = staging->path() + "/images";
  if (Status st = MakeDirs(images_dir, 0700); !st.ok()) return finish(st);
  UniqueFd images(::open(images_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  UniqueFd work(::open(staging->path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!images || !work) return finish(ErrnoStatus("open " + staging->path()));

  records::SnapshotRecord snap;
  snap.set_id(id);
  snap.set_job_id(r.id());
  snap.set_created_unix_ms(NowMs());
  snap.set_criu_version(criu_version_);
  snap.set_incarnation(r.incarnation());
  snap.mutable_root()->CopyFrom(r.root());
  if (!r.attached()) {
    snap.add_stdio_paths(JobDir(r.id()) + "/" + keeper::kStdoutFile);
    snap.add_stdio_paths(JobDir(r.id()) + "/" + keeper::kStderrFile);
  }
  // A process started elsewhere may share its session or group with its parent.
  auto stat = ReadProcStat(r.root().pid());
  snap.set_shell_job(stat && (stat->sid != r.root().pid() || stat->pgid != r.root().pid()));

  snapshot::DumpOptions options;
  options.pid = r.root().pid();
  options.images_dir_fd = images.get();
  options.work_dir_fd = work.get();
  options.log_file = "dump.log";
  options.shell_job = snap.shell_job();
  options.notify = [&](const std::string& script, pid_t) {
    // The tree is still frozen: file offsets now are those of the image.
    if (script != "post-dump") return Status::Ok();
    for (auto& f : snapshot::CollectOpenRegularFiles(r.root().pid())) *snap.add_open_files() = std::move(f);
    if (job.log) {
      auto position = job.log->FreezePosition(ProcessTree(r.root().pid()));
      if (!position.ok()) return position.status();
      snap.set_effectlog_position(position->Packed());
    }
    return Status::Ok();
  };
  auto t0 = std::chrono::steady_clock::now();
  Status dumped = snapshot::CriuDump(options);
  snap.set_dump_ms(static_cast<uint32_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()));
  // CRIU's log stays with the snapshot (or beside the job when the dump failed).
  const std::string logs = SnapshotLogDir(r.id(), id);
  if (!dumped.ok()) {
    std::error_code ec;
    fs::copy_file(staging->path() + "/dump.log", JobDir(r.id()) + "/failed-dump-" + std::to_string(id) + ".log",
                  fs::copy_options::overwrite_existing, ec);
    return finish(dumped.Context("checkpoint of job " + JobLabel(r)));
  }

  // The job runs again: hashing, compression and writes happen now.
  auto t1 = std::chrono::steady_clock::now();
  store::IngestOptions ingest;
  std::optional<store::Manifest> base;
  if (auto ids = store_->ListIds(r.id()); !ids.empty()) {
    auto latest = store_->Load(r.id(), ids.back());
    if (latest.ok()) base = std::move(*latest);
  }
  if (base) ingest.base = &*base;
  auto pending = store_->Ingest(images_dir, ingest);
  if (!pending.ok()) return finish(pending.status().Context("snapshot " + std::to_string(id) + " of job " + JobLabel(r)));
  snap.set_size_bytes(pending->stats().raw_bytes);
  const uint64_t stored_bytes = pending->stats().new_stored_bytes;
  auto& manifest = pending->manifest();
  *manifest.mutable_record() = snap;
  manifest.set_criu_version(criu_version_);
  manifest.set_effectlog_position(snap.effectlog_position());
  manifest.set_created_unix_ms(snap.created_unix_ms());
  Status committed = store_->Commit(r.id(), id, std::move(*pending));
  if (!committed.ok()) return finish(committed.Context("commit snapshot " + std::to_string(id) + " of job " + JobLabel(r)));
  const auto ingest_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1).count();
  if (MakeDirs(logs, 0700).ok()) {
    std::error_code ec;
    fs::copy_file(staging->path() + "/dump.log", logs + "/dump.log", fs::copy_options::overwrite_existing, ec);
  }
  if (job.log) {
    Status marked = job.log->MarkSnapshot(id, r.incarnation(), effectlog::LogPosition::Unpack(snap.effectlog_position()));
    if (!marked.ok()) spdlog::warn("job {}: {}", JobLabel(r), marked.message());
  }
  ApplyRetention(job, r);
  LAZARUS_RETURN_IF_ERROR(finish(Status::Ok()));
  spdlog::info("job {}: snapshot {} taken: dump {} ms, ingest {} ms, {} bytes of images, {} new bytes stored",
               JobLabel(r), id, snap.dump_ms(), ingest_ms, snap.size_bytes(), stored_bytes);
  api::SnapshotInfo info;
  info.set_job(r.id());
  info.set_id(id);
  info.set_created_unix_ms(snap.created_unix_ms());
  info.set_size_bytes(snap.size_bytes());
  info.set_stored_bytes(stored_bytes);
  info.set_dump_ms(snap.dump_ms());
  info.set_path(logs);
  return info;
}

void JobManager::ApplyRetention(Job& job, const JobRecord& r) {
  store::RetentionPolicy policy;
  policy.keep_last = r.keep_last() ? r.keep_last() : kDefaultKeepLast;
  policy.keep_every_seconds = r.keep_every_s();
  auto drop = store::SelectForDeletion(store_->List(r.id()), policy);
  for (uint32_t id : drop) {
    Status st = store_->Delete(r.id(), id);
    if (!st.ok()) spdlog::warn("job {}: retention: {}", JobLabel(r), st.message());
    (void)RemoveTree(SnapshotLogDir(r.id(), id));
  }
  if (drop.empty()) return;
  // Chunks only the dropped snapshots used. Not now if another ingest holds the store:
  // the next retention collects them.
  auto gc = store_->CollectGarbage({.wait = false});
  if (gc.ok()) spdlog::info("job {}: retention dropped {} snapshots, GC freed {} bytes", JobLabel(r), drop.size(), gc->bytes_removed);
  // The log before the oldest snapshot kept is needed by no restore.
  if (!job.log) return;
  auto ids = store_->ListIds(r.id());
  if (ids.empty()) return;
  auto oldest = store_->Load(r.id(), ids.front());
  if (!oldest.ok()) return;
  Status st = job.log->Compact(effectlog::LogPosition::Unpack(oldest->effectlog_position()));
  if (!st.ok()) spdlog::warn("job {}: {}", JobLabel(r), st.message());
}

StatusOr<api::SnapshotList> JobManager::Snapshots(const std::string& ref, const Caller& caller) {
  auto job = Find(ref, caller);
  if (!job.ok()) return job.status();
  JobRecord r = Snapshot(**job);
  api::SnapshotList list;
  for (const auto& s : store_->List(r.id())) {
    auto* info = list.add_snapshots();
    info->set_job(r.id());
    info->set_id(s.snapshot_id);
    info->set_created_unix_ms(s.created_unix_ms);
    info->set_size_bytes(s.raw_bytes);
    info->set_stored_bytes(s.new_stored_bytes);
    info->set_path(SnapshotLogDir(r.id(), s.snapshot_id));
  }
  return list;
}

StatusOr<ScopedDir> JobManager::MakeStaging(const std::string& name) {
  const std::string dir = config_.staging_dir + "/" + name;
  LAZARUS_RETURN_IF_ERROR(RemoveTree(dir));
  LAZARUS_RETURN_IF_ERROR(MakeDirs(dir, 0700).Context("staging directory"));
  return ScopedDir(dir);
}

StatusOr<JobManager::StagedRestore> JobManager::StageRestore(const JobRecord& src, uint32_t wanted) {
  std::vector<uint32_t> candidates;
  if (wanted != 0) {
    candidates.push_back(wanted);
  } else {
    candidates = store_->ListIds(src.id());
    std::reverse(candidates.begin(), candidates.end());  // newest first
    if (candidates.empty())
      return Status(Code::kFailedPrecondition, "job " + JobLabel(src) + " has no snapshots to restore");
  }
  std::string skipped;
  for (uint32_t id : candidates) {
    auto manifest = store_->Load(src.id(), id);
    auto staging = manifest.ok() ? MakeStaging(src.id() + "-restore-" + std::to_string(id))
                                 : StatusOr<ScopedDir>(manifest.status());
    Status st = staging.ok() ? store_->Materialize(*manifest, staging->path() + "/images") : staging.status();
    if (st.ok()) st = WriteRecordFile(staging->path() + "/snapshot.rec", manifest->record());
    if (st.ok()) {
      StagedRestore staged{id, manifest->record(), std::move(*staging), ""};
      if (!skipped.empty())
        staged.warning = skipped + "; restored from snapshot " + std::to_string(id) + ", the newest intact one";
      return staged;
    }
    if (st.code() == Code::kNotFound && !manifest.ok())
      return Status(Code::kNotFound, "job " + JobLabel(src) + " has no snapshot " + std::to_string(id));
    // A damaged snapshot: with no snapshot named, fall back to the next older one.
    if (wanted != 0 || (st.code() != Code::kDataLoss && st.code() != Code::kNotFound))
      return st.Context("snapshot " + std::to_string(id) + " of job " + JobLabel(src));
    skipped += (skipped.empty() ? "" : "; ") + std::string("snapshot ") + std::to_string(id) + " is damaged (" +
               st.message() + ")";
    spdlog::warn("job {}: {}", JobLabel(src), skipped);
  }
  return Status(Code::kDataLoss, "no intact snapshot of job " + JobLabel(src) + ": " + skipped);
}

StatusOr<api::JobInfo> JobManager::Restore(const api::RestoreRequest& request, const Caller& caller) {
  auto found = Find(request.job(), caller);
  if (!found.ok()) return found.status();
  Job& source = **found;
  std::lock_guard op(source.op);
  Refresh(source);
  JobRecord src = Snapshot(source);
  if (!request.clone() && IsLive(src.state()))
    return Status(Code::kFailedPrecondition,
                  "job " + JobLabel(src) + " is " + StateName(src.state()) + " (pid " + std::to_string(src.root().pid()) +
                      "): kill it first, or restore a copy with --clone");
  auto staged = StageRestore(src, request.snapshot());
  if (!staged.ok()) return staged.status();
  const records::SnapshotRecord& snap = staged->record;

  // The job that comes back: the same one, or a new one for a clone.
  std::shared_ptr<Job> clone;
  Job* target = &source;
  JobRecord t = src;
  if (request.clone()) {
    LAZARUS_RETURN_IF_ERROR(CheckNameFree(request.name(), caller.uid));
    JobRecord c;
    c.set_id(NewJobId());
    c.set_name(request.name());
    c.mutable_argv()->CopyFrom(src.argv());
    c.set_cwd(src.cwd());
    c.set_attached(src.attached());
    c.set_uid(src.uid());
    c.set_gid(src.gid());
    c.set_incarnation(0);
    c.set_next_snapshot_id(1);
    c.set_durability(src.durability());
    c.set_group_interval_ms(src.group_interval_ms());
    c.set_shim(src.shim());
    c.set_restored_from(src.id() + "/" + std::to_string(snap.id()));
    c.set_state(records::RECOVERING);
    auto created = CreateJob(c);
    if (!created.ok()) return created.status();
    clone = *created;
    target = clone.get();
    t = c;
    if (source.log) {
      // The clone replays what the original did after the snapshot, from its own copy of
      // the log; its mappings of the original's log files are pointed at the copies.
      Status copied = CopyLog(LogDir(src.id()), LogDir(t.id()));
      auto log = copied.ok() ? JobLog::Open(LogDir(t.id())) : StatusOr<std::unique_ptr<JobLog>>(copied);
      if (!log.ok()) {
        Forget(t.id());
        return log.status().Context("copy the effect log for the clone");
      }
      target->log = std::move(*log);
    }
  }
  const JobState before = t.state();
  t.set_state(records::RECOVERING);
  t.set_kill_requested(false);
  LAZARUS_RETURN_IF_ERROR(Save(*target, t));
  // A failed restore leaves no clone behind, and the job as it was, with the error noted.
  auto give_up = [&](const Status& error) -> Status {
    if (clone) {
      Forget(t.id());
    } else {
      t.set_state(before);
      t.set_last_error(error.message());
      (void)Save(*target, t);
    }
    return error;
  };

  uint32_t incarnation = t.incarnation() + 1;
  if (target->log) {
    // The log is checked and its torn tail cut before anything replays from it.
    auto began = target->log->BeginIncarnation(snap.id());
    if (!began.ok()) {
      return give_up(
          Status(began.status().code(), "restore of job " + JobLabel(src) + " refused: " + began.status().message()));
    }
    incarnation = static_cast<uint32_t>(*began);
  }
  const std::string log = "restore-" + t.id() + "-" + std::to_string(incarnation) + ".log";
  std::vector<std::string> argv{config_.bin_dir + "/lazarus-keeper", "restore", "--job-dir", JobDir(t.id()),
                                "--incarnation", std::to_string(incarnation), "--snapshot-dir", staged->dir.path(),
                                "--uid", std::to_string(t.uid()), "--gid", std::to_string(t.gid()),
                                "--log", log};
  if (clone && target->log) argv.insert(argv.end(), {"--redirect-dir", LogDir(src.id()) + "=" + LogDir(t.id())});
  auto started = LaunchKeeper(argv, {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                              kRestoreTimeout);
  // CRIU's log of the restore stays with the snapshot.
  if (MakeDirs(SnapshotLogDir(src.id(), snap.id()), 0700).ok()) {
    std::error_code ec;
    fs::copy_file(staged->dir.path() + "/" + log, SnapshotLogDir(src.id(), snap.id()) + "/" + log,
                  fs::copy_options::overwrite_existing, ec);
  }
  if (!started.ok()) {
    return give_up(Status(started.status().code(), "restore of job " + JobLabel(src) + " from snapshot " +
                                                      std::to_string(snap.id()) + " failed: " +
                                                      ExplainRestoreError(started.status().message())));
  }
  t.mutable_keeper()->CopyFrom(started->keeper);
  t.mutable_root()->CopyFrom(started->root);
  t.set_incarnation(incarnation);
  t.set_started_unix_ms(NowMs());
  t.set_state(records::RUNNING);
  t.set_exit_status("");
  t.set_last_error("");
  t.set_restored_from(src.id() + "/" + std::to_string(snap.id()));
  LAZARUS_RETURN_IF_ERROR(Save(*target, t));
  if (target->log) target->log->StartKeeping();
  spdlog::info("job {}: restored from {}/{} (pid {}, incarnation {})", JobLabel(t), src.id(), snap.id(),
               t.root().pid(), incarnation);
  api::JobInfo info = Info(t);
  info.set_warning(staged->warning);
  return info;
}

StatusOr<api::JobInfo> JobManager::Kill(const std::string& ref, const Caller& caller) {
  auto found = Find(ref, caller);
  if (!found.ok()) return found.status();
  Job& job = **found;
  std::lock_guard op(job.op);
  Refresh(job);
  JobRecord r = Snapshot(job);
  if (!IsLive(r.state()))
    return Status(Code::kFailedPrecondition, "job " + JobLabel(r) + " is not running (" + StateName(r.state()) + ")");
  r.set_kill_requested(true);
  LAZARUS_RETURN_IF_ERROR(Save(job, r));
  // Killing PID 1 of a namespace ends every process in it; an attached tree has no
  // namespace of its own, so each of its processes gets the signal.
  for (pid_t pid : ProcessTree(r.root().pid()))
    if (ProcessAlive(pid, pid == r.root().pid() ? r.root().start_time() : 0)) ::kill(pid, SIGKILL);
  for (int i = 0; i < 200 && Alive(r); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  if (Alive(r)) return Status(Code::kIo, "job " + JobLabel(r) + " did not die within 5 s of SIGKILL");
  Refresh(job);
  return Info(Snapshot(job));
}

Status JobManager::Remove(const api::RemoveRequest& request, const Caller& caller) {
  auto found = Find(request.job(), caller);
  if (!found.ok()) return found.status();
  Job& job = **found;
  {
    std::unique_lock op(job.op);
    Refresh(job);
    JobRecord r = Snapshot(job);
    if (IsLive(r.state())) {
      if (!request.force())
        return Status(Code::kFailedPrecondition,
                      "job " + JobLabel(r) + " is " + StateName(r.state()) + ": kill it first, or use --force");
      op.unlock();
      auto killed = Kill(r.id(), caller);
      if (!killed.ok()) return killed.status();
      op.lock();
    }
  }
  Forget(Snapshot(job).id());
  spdlog::info("job {}: removed", request.job());
  return Status::Ok();
}

namespace {

std::string TypeName(uint16_t type) {
  switch (static_cast<effectlog::RecordType>(type)) {
    case effectlog::RecordType::kIntent: return "intent";
    case effectlog::RecordType::kResult: return "result";
    case effectlog::RecordType::kSnapshotAt: return "snapshot-at";
    case effectlog::RecordType::kIncarnationBegan: return "incarnation-began";
  }
  return "unknown-" + std::to_string(type);
}

std::string PositionText(effectlog::LogPosition p) {
  return std::to_string(p.segment) + ":" + std::to_string(p.offset);
}

std::string MarkerDetail(const effectlog::RecordView& rec) {
  using effectlog::RecordType;
  if (rec.type == static_cast<uint16_t>(RecordType::kSnapshotAt) &&
      rec.payload_size == sizeof(effectlog::SnapshotAtPayload)) {
    effectlog::SnapshotAtPayload p;
    std::memcpy(&p, rec.payload, sizeof p);
    return "snapshot " + std::to_string(p.snapshot_id) + " of incarnation " + std::to_string(p.incarnation) +
           ", replay from " + PositionText(effectlog::LogPosition::Unpack(p.position));
  }
  if (rec.type == static_cast<uint16_t>(RecordType::kIncarnationBegan) &&
      rec.payload_size == sizeof(effectlog::IncarnationPayload)) {
    effectlog::IncarnationPayload p;
    std::memcpy(&p, rec.payload, sizeof p);
    return "incarnation " + std::to_string(p.incarnation) +
           (p.restored_from_snapshot ? " from snapshot " + std::to_string(p.restored_from_snapshot) : "");
  }
  return "";
}

}  // namespace

StatusOr<api::LogInfo> JobManager::Log(const api::LogRequest& request, const Caller& caller) {
  auto found = Find(request.job(), caller);
  if (!found.ok()) return found.status();
  Job& job = **found;
  const JobRecord r = Snapshot(job);
  if (r.durability().empty()) return Status(Code::kFailedPrecondition, "job " + JobLabel(r) + " has no effect log");
  // Writers may be appending while we read: a live reader stops at a pending slot.
  effectlog::ReaderOptions options;
  options.live = IsLive(r.state());
  auto reader = effectlog::Reader::Open(LogDir(r.id()), options);
  if (!reader.ok()) return reader.status().Context("read the effect log of job " + JobLabel(r));
  api::LogInfo info;
  info.set_job(r.id());
  info.set_durability(r.durability());
  std::vector<effectlog::RecordView> all;
  std::set<std::pair<uint32_t, uint64_t>> results;
  std::vector<std::string> details;
  effectlog::RecordView rec;
  while ((*reader)->Next(&rec)) {
    if (rec.type == static_cast<uint16_t>(effectlog::RecordType::kResult)) results.insert({rec.channel, rec.sequence});
    details.push_back(MarkerDetail(rec));
    rec.payload = nullptr;  // valid only until the next call
    all.push_back(rec);
  }
  for (size_t i = 0; i < all.size(); ++i) {
    const auto& v = all[i];
    if (v.sequence < request.from_sequence()) continue;
    if (request.limit() && static_cast<uint32_t>(info.records_size()) >= request.limit()) break;
    auto* out = info.add_records();
    out->set_type(TypeName(v.type));
    out->set_channel(v.channel);
    out->set_sequence(v.sequence);
    out->set_kind(v.kind);
    out->set_payload_size(v.payload_size);
    out->set_length(v.length);
    out->set_position(PositionText(v.position));
    out->set_detail(details[i]);
    if (v.channel == effectlog::kDaemonChannel) out->set_state("marker");
    else if (v.type == static_cast<uint16_t>(effectlog::RecordType::kIntent))
      // An effect's INTENT has sequence s and its RESULT s + 1 (client-lib/README.md).
      out->set_state(results.count({v.channel, v.sequence + 1}) ? "done" : "in doubt");
    else out->set_state("done");
  }
  const auto& end = (*reader)->end();
  info.set_end(effectlog::EndKindName(end.kind));
  info.set_end_position(PositionText(end.position));
  info.set_problem(end.problem);
  info.set_abandoned((*reader)->abandoned());
  if (job.log) info.set_incarnation(job.log->control().incarnation());
  return info;
}

StatusOr<api::VerifyReport> JobManager::Verify(const api::VerifyRequest& request, const Caller& caller) {
  store::VerifyOptions options;
  if (request.all()) {
    if (!caller.is_root()) return Status(Code::kPermissionDenied, "permission denied: only root verifies every job");
  } else {
    auto found = Find(request.job(), caller);
    if (!found.ok()) return found.status();
    options.job = Snapshot(**found).id();
  }
  auto report = store_->Verify(options);
  if (!report.ok()) return report.status().Context("verify");
  auto key = [](const store::SnapshotKey& k) { return k.job_id + "/" + std::to_string(k.snapshot_id); };
  api::VerifyReport out;
  out.set_snapshots_checked(report->snapshots_checked);
  out.set_chunks_checked(report->chunks_checked);
  out.set_bytes_checked(report->bytes_checked);
  for (const auto& bad : report->bad_chunks) {
    auto* b = out.add_bad_chunks();
    b->set_id(bad.id.Hex());
    b->set_problem(bad.problem);
    for (const auto& k : bad.needed_by) b->add_needed_by(key(k));
  }
  for (const auto& m : report->bad_manifests) out.add_bad_manifests(m);
  for (const auto& k : report->damaged_snapshots) out.add_damaged_snapshots(key(k));
  out.set_ok(report->ok());
  return out;
}

}  // namespace lazarus
