// Helpers for the client-library tests: a scratch directory with an effect log, running a
// program the way `lazarus run` would (LAZARUS_* in its environment, the shim preloaded),
// and acting out a restore without the daemon: bump the incarnation (as the daemon does
// before a restore) and run the program again from the start. A fresh process replays from
// sequence 0 on every channel, which is what restoring a snapshot taken at program start
// would do.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "effectlog/log_files.h"
#include "effectlog/reader.h"

namespace lazarus::client_test {

inline const std::string kBinDir = LAZARUS_CLIENT_BIN_DIR;
inline const std::string kShim = kBinDir + "/liblazarus-preload.so";

class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "lzc-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

inline int CountLines(const std::string& text, const std::string& prefix) {
  int n = 0;
  for (const auto& l : Lines(text)) n += l.rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

// The effect log of a test job: made the way `lazarus run` makes it.
inline void MakeLog(const std::string& dir, uint32_t segment_size = effectlog::kDefaultSegmentSize,
                    effectlog::DurabilityMode durability = effectlog::DurabilityMode::kProcess) {
  effectlog::LogOptions o;
  o.segment_size = segment_size;
  o.durability = durability;
  const Status st = effectlog::CreateLog(dir, o);
  ASSERT_TRUE(st.ok()) << st.message();
}

// What the daemon does before a restore. Returns the new incarnation.
inline uint64_t BumpIncarnation(const std::string& dir) {
  auto control = effectlog::ControlFile::Open(dir, /*writable=*/true);
  EXPECT_TRUE(control.ok()) << control.status().message();
  return control.ok() ? control->BeginIncarnation() : 0;
}

struct LogRecord {
  uint16_t type;
  uint32_t channel;
  uint64_t sequence;
  uint32_t kind;
  std::string payload;
};

inline std::vector<LogRecord> ReadLog(const std::string& dir) {
  std::vector<LogRecord> out;
  auto reader = effectlog::Reader::Open(dir);
  EXPECT_TRUE(reader.ok()) << reader.status().message();
  if (!reader.ok()) return out;
  effectlog::RecordView r;
  while ((*reader)->Next(&r)) {
    out.push_back({r.type, r.channel, r.sequence, r.kind,
                   std::string(reinterpret_cast<const char*>(r.payload), r.payload_size)});
  }
  EXPECT_NE((*reader)->end().kind, effectlog::EndKind::kCorrupt) << (*reader)->end().problem;
  return out;
}

struct RunResult {
  int status = -1;  // exit status, or 128 + signal
  std::string out;
  std::string err;
};

struct RunOptions {
  std::string log;           // LAZARUS_LOG ("" = not under Lazarus)
  bool shim = false;         // preload liblazarus-preload.so
  std::vector<std::string> env;  // more NAME=VALUE
  long monotonic_offset_s = 0;   // run in a time namespace with CLOCK_MONOTONIC moved by this
  int timeout_s = 60;
};

// Runs `argv` (argv[0] relative to the build's bin/ unless absolute) to its end.
inline RunResult RunProgram(std::vector<std::string> argv, const RunOptions& options) {
  if (argv[0].find('/') == std::string::npos) argv[0] = kBinDir + "/" + argv[0];
  ScratchDir io;
  const std::string out_path = io / "out", err_path = io / "err";
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string s = *e;
    if (s.rfind("LAZARUS_", 0) == 0 || s.rfind("LD_PRELOAD=", 0) == 0) continue;
    env.push_back(s);
  }
  if (!options.log.empty()) {
    env.push_back("LAZARUS_LOG=" + options.log);
    env.push_back("LAZARUS_JOB=testjob");
  }
  if (options.shim) env.push_back("LD_PRELOAD=" + kShim);
  for (const auto& e : options.env) env.push_back(e);
  std::vector<char*> cargv, cenv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid == 0) {
    const int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(o, 1);
    ::dup2(e, 2);
    ::alarm(static_cast<unsigned>(options.timeout_s));
    if (options.monotonic_offset_s != 0) {
      // A time namespace applies to the children of the process that made it.
      if (::unshare(CLONE_NEWTIME) != 0) ::_exit(120);
      const std::string offsets = "monotonic " + std::to_string(options.monotonic_offset_s) + " 0\n";
      const int f = ::open("/proc/self/timens_offsets", O_WRONLY);
      if (f < 0 || ::write(f, offsets.data(), offsets.size()) != static_cast<ssize_t>(offsets.size())) ::_exit(121);
      ::close(f);
      const pid_t child = ::fork();
      if (child == 0) {
        ::execve(cargv[0], cargv.data(), cenv.data());
        ::_exit(127);
      }
      int st = 0;
      ::waitpid(child, &st, 0);
      ::_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    }
    ::execve(cargv[0], cargv.data(), cenv.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  RunResult r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = ReadText(out_path);
  r.err = ReadText(err_path);
  return r;
}

}  // namespace lazarus::client_test
