// lazarus: the command line. A thin client: it parses, sends one request to the daemon,
// and prints the answer (a table, or protobuf JSON with --json).
//
// Exit status: 0 success, 1 the daemon refused or failed, 2 wrong usage, 3 no daemon.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include <boost/program_options.hpp>
#include <google/protobuf/util/json_util.h>

#include "common/unique_fd.h"
#include "daemon/api.pb.h"
#include "daemon/wire.h"

extern char** environ;
namespace po = boost::program_options;

namespace lazarus::cli {
namespace {

constexpr const char* kDefaultSocket = "/run/lazarus/lazarusd.sock";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Command {
  const char* synopsis;
  const char* summary;
  std::function<int(const std::vector<std::string>& args)> run;
};

std::string g_socket;

[[noreturn]] void Fail(const std::string& message, int code = 1) {
  std::cerr << "lazarus: error: " << message << "\n";
  std::exit(code);
}

api::Response Call(const api::Request& request) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (g_socket.size() >= sizeof addr.sun_path) Fail("socket path too long: " + g_socket, 2);
  g_socket.copy(addr.sun_path, sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    Fail("cannot reach lazarusd at " + g_socket + ": " + std::strerror(errno) + " (is it running?)", 3);
  if (Status st = wire::WriteMessage(fd.get(), request); !st.ok()) Fail(st.message());
  api::Response response;
  if (Status st = wire::ReadMessage(fd.get(), &response); !st.ok()) Fail("no answer from lazarusd: " + st.message());
  if (!response.ok()) {
    // One line for the error; CRIU's details, if any, follow it.
    Fail(response.error().empty() ? "the daemon failed without saying why" : response.error());
  }
  return response;
}

void PrintJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  std::cout << out << "\n";
}

std::string FormatTime(int64_t unix_ms) {
  std::time_t t = unix_ms / 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  std::ostringstream out;
  out << std::put_time(&tm, "%Y-%m-%d %H:%M:%S");
  return out.str();
}

std::string FormatBytes(uint64_t bytes) {
  std::ostringstream out;
  if (bytes >= (1ull << 30)) out << std::fixed << std::setprecision(1) << bytes / double(1ull << 30) << " GiB";
  else if (bytes >= (1ull << 20)) out << std::fixed << std::setprecision(1) << bytes / double(1ull << 20) << " MiB";
  else out << std::fixed << std::setprecision(1) << bytes / 1024.0 << " KiB";
  return out.str();
}

std::string FormatDuration(int64_t ms) {
  int64_t s = ms / 1000;
  std::ostringstream out;
  if (s >= 3600) out << s / 3600 << "h" << (s % 3600) / 60 << "m";
  else if (s >= 60) out << s / 60 << "m" << s % 60 << "s";
  else out << s << "s";
  return out.str();
}

std::string Joined(const google::protobuf::RepeatedPtrField<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

// Parses `args` with `options` (plus --help); `positional` names take the bare words.
po::variables_map ParseArgs(const std::string& name, const std::vector<std::string>& args,
                            po::options_description options, const po::positional_options_description& positional,
                            const Command& command) {
  options.add_options()("help,h", "show this help");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(options).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout << "Usage: lazarus " << command.synopsis << "\n\n" << command.summary << "\n\n" << options << "\n";
      std::exit(0);
    }
    po::notify(vm);
  } catch (const po::required_option& e) {
    // "--job is required" reads oddly for a bare word: name the word.
    std::string word = e.get_option_name();
    while (!word.empty() && word[0] == '-') word.erase(0, 1);
    for (auto& c : word) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    throw UsageError("missing " + word);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return vm;
}

void AddPolicyOptions(po::options_description& o) {
  o.add_options()("interval", po::value<uint32_t>(), "snapshot the job every S seconds (0: never)")(
      "keep", po::value<uint32_t>(), "keep the last N snapshots (default 3)")(
      "keep-every", po::value<uint32_t>(), "also keep one snapshot per S seconds (e.g. 3600)");
}

// Program_options reads "-1" into an unsigned as 4294967295: refuse what no one means.
uint32_t CheckSeconds(const po::variables_map& vm, const char* name) {
  const uint32_t value = vm[name].as<uint32_t>();
  if (value > 366u * 24 * 3600) throw UsageError(std::string("--") + name + " must be between 0 and a year of seconds");
  return value;
}

uint32_t CheckKeep(uint32_t keep) {
  if (keep == 0) throw UsageError("--keep must be at least 1");
  return keep;
}

api::Request JobRequest(const std::string& job, api::JobRef* (api::Request::*field)()) {
  api::Request request;
  (request.*field)()->set_job(job);
  return request;
}

void PrintJob(const api::JobInfo& job) {
  std::cout << "id:            " << job.id() << "\n"
            << "name:          " << job.name() << "\n"
            << "state:         " << job.state() << "\n"
            << "pid:           " << (job.pid() ? std::to_string(job.pid()) : "-") << "\n"
            << "uptime:        " << (job.pid() ? FormatDuration(job.uptime_ms()) : "-") << "\n"
            << "incarnation:   " << job.incarnation() << "\n"
            << "snapshots:     " << job.snapshot_count()
            << (job.snapshot_count() ? " (latest " + std::to_string(job.latest_snapshot()) + ")" : "") << "\n"
            << "command:       " << Joined(job.argv()) << "\n"
            << "policy:        "
            << (job.policy().interval_s() ? "snapshot every " + std::to_string(job.policy().interval_s()) + " s"
                                          : std::string("no periodic snapshots"))
            << ", keep last " << job.policy().keep_last()
            << (job.policy().keep_every_s() ? " + one per " + std::to_string(job.policy().keep_every_s()) + " s" : "")
            << "\n";
  std::cout << "effect log:    "
            << (job.durability().empty() ? std::string("none") : job.durability() + " durability")
            << (job.durability().empty() ? "" : job.shim() ? ", shim preloaded" : ", no shim") << "\n";
  if (!job.replay().empty())
    std::cout << "replay:        " << job.replay()
              << (job.replay() == "replaying" ? " (" + std::to_string(job.replay_total() - job.replay_pending()) + " of " +
                                                    std::to_string(job.replay_total()) + " records)"
                                              : "")
              << ", " << job.effects_replayed() << " effects answered from the log, " << job.effects_in_doubt()
              << " in doubt\n";
  if (job.attached()) std::cout << "attached:      yes (snapshots only; a restore needs its PIDs free)\n";
  if (!job.restored_from().empty()) std::cout << "restored from: " << job.restored_from() << "\n";
  if (!job.exit_status().empty()) std::cout << "exit status:   " << job.exit_status() << "\n";
  if (!job.stdout_path().empty()) std::cout << "stdout:        " << job.stdout_path() << "\n";
  if (!job.stderr_path().empty()) std::cout << "stderr:        " << job.stderr_path() << "\n";
  std::cout << "last error:    " << (job.last_error().empty() ? "-" : job.last_error()) << "\n";
}

std::map<std::string, Command> Commands() {
  std::map<std::string, Command> commands;
  auto job_arg = [](po::options_description& o, po::positional_options_description& p, std::string& job) {
    o.add_options()("job", po::value(&job)->required(), "job id or name");
    p.add("job", 1);
  };

  commands["run"] = {"run [--name NAME] [--interval S] [--keep N] [--keep-every S] [--durability MODE] [--no-shim] [--json] -- CMD ARGS...",
                     "Starts CMD as a new job, in its own PID namespace, and prints its id.", nullptr};
  commands["run"].run = [&cmd = commands["run"]](const std::vector<std::string>& all) {
    auto dash = std::find(all.begin(), all.end(), "--");
    std::vector<std::string> args(all.begin(), dash);
    std::vector<std::string> command(dash == all.end() ? dash : dash + 1, all.end());
    std::string name;
    bool json = false;
    po::options_description o("Options");
    o.add_options()("name", po::value(&name), "a name to refer to the job by")("json", po::bool_switch(&json), "print JSON");
    AddPolicyOptions(o);
    std::string durability;
    uint32_t group_ms = 0;
    bool no_shim = false;
    o.add_options()("durability", po::value(&durability),
                    "when an effect counts as recorded: process (default: survives a crash of the job and the "
                    "daemon), group (on disk within --group-ms), sync (on disk before the effect returns)")(
        "group-ms", po::value(&group_ms), "group mode: fdatasync at least every N ms (default 5)")(
        "no-shim", po::bool_switch(&no_shim), "do not preload liblazarus-preload.so into the job");
    // Without "--", the first bare word starts the command.
    po::positional_options_description p;
    p.add("command", -1);
    o.add_options()("command", po::value<std::vector<std::string>>(), "the command");
    auto vm = ParseArgs("run", args, o, p, cmd);
    if (vm.count("command")) {
      auto words = vm["command"].as<std::vector<std::string>>();
      command.insert(command.begin(), words.begin(), words.end());
    }
    if (command.empty()) throw UsageError("no command given");
    api::Request request;
    auto* run = request.mutable_run();
    run->set_name(name);
    run->set_durability(durability);
    run->set_group_interval_ms(group_ms);
    run->set_no_shim(no_shim);
    if (vm.count("interval")) run->mutable_policy()->set_interval_s(CheckSeconds(vm, "interval"));
    if (vm.count("keep")) run->mutable_policy()->set_keep_last(CheckKeep(vm["keep"].as<uint32_t>()));
    if (vm.count("keep-every")) run->mutable_policy()->set_keep_every_s(CheckSeconds(vm, "keep-every"));
    for (const auto& c : command) run->add_argv(c);
    run->set_cwd(std::filesystem::current_path().string());
    for (char** e = environ; *e; ++e) run->add_env(*e);
    auto resp = Call(request);
    if (json) PrintJson(resp.job());
    else std::cout << resp.job().id() << "\n";
    return 0;
  };

  commands["list"] = {"list [--json]", "Lists the jobs.", nullptr};
  commands["list"].run = [&cmd = commands["list"]](const std::vector<std::string>& args) {
    bool json = false;
    po::options_description o("Options");
    o.add_options()("json", po::bool_switch(&json), "print JSON");
    ParseArgs("list", args, o, {}, cmd);
    api::Request request;
    request.mutable_list();
    auto resp = Call(request);
    if (json) {
      PrintJson(resp.jobs());
      return 0;
    }
    std::cout << std::left << std::setw(10) << "ID" << std::setw(16) << "NAME" << std::setw(13) << "STATE"
              << std::setw(9) << "PID" << std::setw(11) << "SNAPSHOTS" << std::setw(9) << "UPTIME" << "COMMAND\n";
    for (const auto& j : resp.jobs().jobs())
      std::cout << std::setw(10) << j.id() << std::setw(16) << (j.name().empty() ? "-" : j.name()) << std::setw(13)
                << j.state() << std::setw(9) << (j.pid() ? std::to_string(j.pid()) : "-") << std::setw(11)
                << j.snapshot_count() << std::setw(9) << (j.pid() ? FormatDuration(j.uptime_ms()) : "-")
                << Joined(j.argv()) << "\n";
    return 0;
  };

  commands["status"] = {"status JOB [--json]", "Shows a job: state, pid, uptime, snapshots, last error.", nullptr};
  commands["status"].run = [&cmd = commands["status"], job_arg](const std::vector<std::string>& args) {
    std::string job;
    bool json = false;
    po::options_description o("Options");
    po::positional_options_description p;
    job_arg(o, p, job);
    o.add_options()("json", po::bool_switch(&json), "print JSON");
    ParseArgs("status", args, o, p, cmd);
    auto resp = Call(JobRequest(job, &api::Request::mutable_status));
    if (json) PrintJson(resp.job());
    else PrintJob(resp.job());
    return 0;
  };

  commands["checkpoint"] = {"checkpoint JOB [--json]",
                            "Takes a snapshot of a running job (it keeps running) and prints the snapshot's id.",
                            nullptr};
  commands["checkpoint"].run = [&cmd = commands["checkpoint"], job_arg](const std::vector<std::string>& args) {
    std::string job;
    bool json = false;
    po::options_description o("Options");
    po::positional_options_description p;
    job_arg(o, p, job);
    o.add_options()("json", po::bool_switch(&json), "print JSON");
    ParseArgs("checkpoint", args, o, p, cmd);
    auto resp = Call(JobRequest(job, &api::Request::mutable_checkpoint));
    if (json) PrintJson(resp.snapshot());
    else std::cout << resp.snapshot().id() << "\n";
    return 0;
  };

  commands["snapshots"] = {"snapshots JOB [--json]", "Lists a job's snapshots with their size and time.", nullptr};
  commands["snapshots"].run = [&cmd = commands["snapshots"], job_arg](const std::vector<std::string>& args) {
    std::string job;
    bool json = false;
    po::options_description o("Options");
    po::positional_options_description p;
    job_arg(o, p, job);
    o.add_options()("json", po::bool_switch(&json), "print JSON");
    ParseArgs("snapshots", args, o, p, cmd);
    auto resp = Call(JobRequest(job, &api::Request::mutable_snapshots));
    if (json) {
      PrintJson(resp.snapshots());
      return 0;
    }
    std::cout << std::left << std::setw(6) << "ID" << std::setw(22) << "CREATED" << std::setw(13) << "IMAGES"
              << "STORED (new)\n";
    for (const auto& s : resp.snapshots().snapshots())
      std::cout << std::setw(6) << s.id() << std::setw(22) << FormatTime(s.created_unix_ms()) << std::setw(13)
                << FormatBytes(s.size_bytes()) << FormatBytes(s.stored_bytes()) << "\n";
    return 0;
  };

  commands["restore"] = {"restore JOB [--snapshot ID] [--clone [--name NAME]] [--json]",
                         "Brings back a job whose processes are gone from its newest (or the named) snapshot.\n"
                         "With --clone, restores the snapshot into a new job instead (the original may run).",
                         nullptr};
  commands["restore"].run = [&cmd = commands["restore"], job_arg](const std::vector<std::string>& args) {
    std::string job, name;
    uint32_t snapshot = 0;
    bool json = false, clone = false;
    po::options_description o("Options");
    po::positional_options_description p;
    job_arg(o, p, job);
    o.add_options()("snapshot", po::value(&snapshot), "the snapshot to restore (default: the newest)")(
        "clone", po::bool_switch(&clone), "restore into a new job")("name", po::value(&name), "name of the clone")(
        "json", po::bool_switch(&json), "print JSON");
    auto vm = ParseArgs("restore", args, o, p, cmd);
    if (vm.count("name") && !clone) throw UsageError("--name only goes with --clone");
    if (vm.count("snapshot") && snapshot == 0) throw UsageError("snapshot ids start at 1");
    api::Request request;
    auto* r = request.mutable_restore();
    r->set_job(job);
    r->set_snapshot(snapshot);
    r->set_clone(clone);
    r->set_name(name);
    auto resp = Call(request);
    if (!resp.job().warning().empty()) std::cerr << "lazarus: warning: " << resp.job().warning() << "\n";
    if (json) PrintJson(resp.job());
    else std::cout << resp.job().id() << "\n";
    return 0;
  };

  commands["kill"] = {"kill JOB", "Stops a job for good (SIGKILL to every process of it).", nullptr};
  commands["kill"].run = [&cmd = commands["kill"], job_arg](const std::vector<std::string>& args) {
    std::string job;
    po::options_description o("Options");
    po::positional_options_description p;
    job_arg(o, p, job);
    ParseArgs("kill", args, o, p, cmd);
    Call(JobRequest(job, &api::Request::mutable_kill));
    return 0;
  };

  commands["rm"] = {"rm JOB [--force]", "Deletes a job that is not running, with its snapshots and files.", nullptr};
  commands["rm"].run = [&cmd = commands["rm"], job_arg](const std::vector<std::string>& args) {
    std::string job;
    bool force = false;
    po::options_description o("Options");
    po::positional_options_description p;
    job_arg(o, p, job);
    o.add_options()("force,f", po::bool_switch(&force), "kill the job first if it runs");
    ParseArgs("rm", args, o, p, cmd);
    api::Request request;
    request.mutable_rm()->set_job(job);
    request.mutable_rm()->set_force(force);
    Call(request);
    return 0;
  };

  commands["policy"] = {"policy JOB [--interval S] [--keep N] [--keep-every S] [--json]",
                        "Changes when the daemon snapshots a job by itself (--interval, 0: never) and which\n"
                        "snapshots retention keeps (the last --keep, default 3, plus one per --keep-every seconds).",
                        nullptr};
  commands["policy"].run = [&cmd = commands["policy"], job_arg](const std::vector<std::string>& args) {
    std::string job;
    bool json = false;
    po::options_description o("Options");
    po::positional_options_description p;
    job_arg(o, p, job);
    AddPolicyOptions(o);
    o.add_options()("json", po::bool_switch(&json), "print JSON");
    auto vm = ParseArgs("policy", args, o, p, cmd);
    api::Request request;
    auto* r = request.mutable_policy();
    r->set_job(job);
    if (vm.count("interval")) r->set_interval_s(CheckSeconds(vm, "interval"));
    if (vm.count("keep")) r->set_keep_last(CheckKeep(vm["keep"].as<uint32_t>()));
    if (vm.count("keep-every")) r->set_keep_every_s(CheckSeconds(vm, "keep-every"));
    auto resp = Call(request);
    if (json) PrintJson(resp.job());
    else PrintJob(resp.job());
    return 0;
  };

  commands["log"] = {"log JOB [--from SEQ] [--limit N] [--json]",
                     "Prints a job's effect log: what a restore will replay (kind, channel, sequence, sizes,\n"
                     "state: done, in doubt, or a marker of the daemon) and how the log ends.",
                     nullptr};
  commands["log"].run = [&cmd = commands["log"], job_arg](const std::vector<std::string>& args) {
    std::string job;
    uint64_t from = 0;
    uint32_t limit = 0;
    bool json = false;
    po::options_description o("Options");
    po::positional_options_description p;
    job_arg(o, p, job);
    o.add_options()("from", po::value(&from), "only records with sequence number >= SEQ")(
        "limit", po::value(&limit), "at most N records")("json", po::bool_switch(&json), "print JSON");
    ParseArgs("log", args, o, p, cmd);
    api::Request request;
    request.mutable_log()->set_job(job);
    request.mutable_log()->set_from_sequence(from);
    request.mutable_log()->set_limit(limit);
    auto resp = Call(request);
    if (json) {
      PrintJson(resp.log());
      return 0;
    }
    const auto& log = resp.log();
    std::cout << std::left << std::setw(12) << "POSITION" << std::setw(19) << "TYPE" << std::setw(9) << "CHANNEL"
              << std::setw(10) << "SEQUENCE" << std::setw(7) << "KIND" << std::setw(9) << "PAYLOAD" << "STATE\n";
    for (const auto& r : log.records())
      std::cout << std::setw(12) << r.position() << std::setw(19) << r.type() << std::setw(9)
                << (r.state() == "marker" ? std::string("daemon") : std::to_string(r.channel())) << std::setw(10)
                << r.sequence() << std::setw(7) << r.kind() << std::setw(9) << r.payload_size()
                << (r.detail().empty() ? r.state() : r.state() + ": " + r.detail()) << "\n";
    std::cout << "-- " << log.records_size() << " records, " << log.durability() << " durability, incarnation "
              << log.incarnation() << ", log ends " << log.end() << " at " << log.end_position()
              << (log.problem().empty() ? "" : " (" + log.problem() + ")")
              << (log.abandoned() ? ", " + std::to_string(log.abandoned()) + " abandoned slots" : "") << "\n";
    return 0;
  };

  commands["verify"] = {"verify JOB | verify --all [--json]",
                        "Re-reads every chunk of a job's snapshots (or of all jobs) and checks it against its hash.\n"
                        "Names every bad chunk and the snapshots that need it; exits 1 when something is damaged.",
                        nullptr};
  commands["verify"].run = [&cmd = commands["verify"]](const std::vector<std::string>& args) {
    std::string job;
    bool all = false, json = false;
    po::options_description o("Options");
    po::positional_options_description p;
    o.add_options()("job", po::value(&job), "job id or name")("all", po::bool_switch(&all), "every job")(
        "json", po::bool_switch(&json), "print JSON");
    p.add("job", 1);
    ParseArgs("verify", args, o, p, cmd);
    if (all == !job.empty()) throw UsageError("give a job or --all");
    api::Request request;
    request.mutable_verify()->set_job(job);
    request.mutable_verify()->set_all(all);
    auto resp = Call(request);
    const auto& v = resp.verify();
    if (json) {
      PrintJson(v);
    } else {
      for (const auto& b : v.bad_chunks()) {
        std::string needed;
        for (const auto& n : b.needed_by()) needed += (needed.empty() ? "" : ", ") + n;
        std::cout << "bad chunk " << b.id() << ": " << b.problem() << " (needed by " << needed << ")\n";
      }
      for (const auto& m : v.bad_manifests()) std::cout << "bad manifest " << m << "\n";
      std::cout << (v.ok() ? "ok: " : "DAMAGED: ") << v.snapshots_checked() << " snapshots, " << v.chunks_checked()
                << " chunks, " << FormatBytes(v.bytes_checked()) << " checked";
      if (!v.ok()) {
        std::string damaged;
        for (const auto& d : v.damaged_snapshots()) damaged += (damaged.empty() ? "" : ", ") + d;
        std::cout << "; snapshots that cannot be restored: " << (damaged.empty() ? "-" : damaged);
      }
      std::cout << "\n";
    }
    return v.ok() ? 0 : 1;
  };

  commands["attach"] = {"attach PID [--name NAME] [--json]",
                        "Adopts a process tree started elsewhere (snapshots only: it has no PID namespace of its own,\n"
                        "so its restore needs every PID of the tree free, and says so when one is taken).",
                        nullptr};
  commands["attach"].run = [&cmd = commands["attach"]](const std::vector<std::string>& args) {
    int pid = 0;
    std::string name;
    bool json = false;
    po::options_description o("Options");
    po::positional_options_description p;
    o.add_options()("pid", po::value(&pid)->required(), "the root of the tree")("name", po::value(&name), "a name")(
        "json", po::bool_switch(&json), "print JSON");
    p.add("pid", 1);
    ParseArgs("attach", args, o, p, cmd);
    api::Request request;
    request.mutable_attach()->set_pid(pid);
    request.mutable_attach()->set_name(name);
    auto resp = Call(request);
    if (json) PrintJson(resp.job());
    else std::cout << resp.job().id() << "\n";
    return 0;
  };
  return commands;
}

void Usage(std::ostream& out, const std::map<std::string, Command>& commands) {
  out << "Usage: lazarus [--socket PATH] COMMAND [ARGS...]\n\n"
      << "Makes Linux processes durable: runs them as jobs, snapshots them with CRIU, restores them.\n\n"
      << "Commands:\n";
  for (const auto& [name, c] : commands) out << "  " << std::left << std::setw(60) << c.synopsis << "\n";
  out << "\nOptions:\n"
      << "  --socket PATH   the daemon's socket (default $LAZARUS_SOCKET, else " << kDefaultSocket << ")\n"
      << "  -h, --help      this help; `lazarus COMMAND --help` for a command's\n";
}

int Main(int argc, char** argv) {
  auto commands = Commands();
  const char* env_socket = std::getenv("LAZARUS_SOCKET");
  g_socket = env_socket && *env_socket ? env_socket : kDefaultSocket;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      Usage(std::cout, commands);
      return 0;
    }
    if (a == "--socket" && i + 1 < argc) g_socket = argv[++i];
    else if (a.rfind("--socket=", 0) == 0) g_socket = a.substr(9);
    else break;
  }
  if (i >= argc) {
    Usage(std::cerr, commands);
    return 2;
  }
  auto it = commands.find(argv[i]);
  if (it == commands.end()) {
    std::cerr << "lazarus: error: unknown command '" << argv[i] << "' (see lazarus --help)\n";
    return 2;
  }
  std::vector<std::string> args(argv + i + 1, argv + argc);
  try {
    return it->second.run(args);
  } catch (const UsageError& e) {
    std::cerr << "lazarus: error: " << e.what() << "\nUsage: lazarus " << it->second.synopsis << "\n";
    return 2;
  }
}

}  // namespace
}  // namespace lazarus::cli

int main(int argc, char** argv) { return lazarus::cli::Main(argc, argv); }
