// lazarus-bench-store: what the snapshot store costs and saves, side by side with the raw
// `criu dump` image directories it ingests. It prints figures; it never fails because
// something was slow.
//
// One real process (store-bench-job: MIB MiB of heap-like memory) is dumped N times by
// `criu dump --leave-running` into a tmpfs staging directory; between dumps the job rewrites
// 1% of its pages, chosen at random. Each dump is ingested into a store on disk (with the
// previous snapshot as base, as the daemon does), committed, materialized back into tmpfs,
// and its staging directory is removed. Per snapshot it prints the raw image size, the bytes
// the store added (new chunk files plus the manifest file), ingest wall and CPU time, and
// materialize time next to reading and copying the raw image directory. The figures at the
// end are medians over snapshots 2..N (snapshot 1 stores everything and is shown apart).
//   --sweep    also ingests snapshot 1 into scratch stores at several zstd levels and
//              thread counts (how the defaults were chosen)
//   --quick    256 MiB, 3 snapshots, no sweep, no cold-cache figures: a smoke run
// Cold-cache figures drop only the benchmark's own files from the page cache
// (posix_fadvise DONTNEED), never the whole machine's.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/fs_util.h"
#include "common/unique_fd.h"
#include "snapshot/chunk_store.h"

extern char** environ;

namespace lazarus::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kMiB = 1024.0 * 1024.0;

// A failure of the benchmark itself; caught in main after the destructors cleaned up.
struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void Check(const Status& st, const std::string& what) {
  if (!st.ok()) throw BenchError(what + ": " + st.message());
}

double SecondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string SelfDir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

std::string CriuBinary() {
  const char* env = std::getenv("LAZARUS_CRIU");
  return env && *env ? env : LAZARUS_CRIU_BINARY;
}

// A directory removed with everything in it when the benchmark ends.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& parent) {
    std::string tmpl = parent + "/lazarus-store-bench-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw BenchError("mkdtemp in " + parent + ": " + std::strerror(errno));
    path_ = tmpl;
  }
  ~ScratchDir() { (void)RemoveTree(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The dumped job; SIGKILLed and reaped at the end.
class Job {
 public:
  Job(const std::vector<std::string>& argv, const std::string& log) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    int err = posix_spawn(&pid_, cargv[0], &fa, &attr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (err != 0) throw BenchError("spawn " + argv[0] + ": " + std::strerror(err));
  }
  ~Job() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// Runs a command to completion with its output in `log`; true when it exited 0.
bool Run(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t pid = -1;
  int err = posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (err != 0) throw BenchError("spawn " + argv[0] + ": " + std::strerror(err));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

unsigned ReadGeneration(const std::string& status_file) {
  auto line = ReadFile(status_file);
  unsigned gen = 0;
  if (line.ok()) std::sscanf(line->c_str(), "gen %u", &gen);
  return gen;
}

void WaitForGeneration(const std::string& status_file, unsigned gen, pid_t job) {
  const auto deadline = Clock::now() + std::chrono::seconds(300);
  while (ReadGeneration(status_file) < gen) {
    if (::kill(job, 0) != 0) throw BenchError("the job died (see its log)");
    if (Clock::now() > deadline) throw BenchError("timed out waiting for the job to reach generation " + std::to_string(gen));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path().string());
  return out;
}

uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& f : Files(dir)) total += fs::file_size(f);
  return total;
}

// Bytes of all regular files under `root`, and the blocks they occupy.
std::pair<uint64_t, uint64_t> TreeUsage(const std::string& root) {
  uint64_t bytes = 0, allocated = 0;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    struct stat st {};
    if (it->is_regular_file() && ::stat(it->path().c_str(), &st) == 0) {
      bytes += static_cast<uint64_t>(st.st_size);
      allocated += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  return {bytes, allocated};
}

// Reads every file of `dir` (what `criu restore` would read from an image directory).
double TimeReadDir(const std::string& dir) {
  std::vector<char> buf(1 << 20);
  const auto t0 = Clock::now();
  for (const auto& f : Files(dir)) {
    UniqueFd fd(::open(f.c_str(), O_RDONLY | O_CLOEXEC));
    while (fd && ::read(fd.get(), buf.data(), buf.size()) > 0) {
    }
  }
  return SecondsSince(t0);
}

double TimeCopyDir(const std::string& from, const std::string& to) {
  const auto t0 = Clock::now();
  fs::create_directories(to);
  for (const auto& f : Files(from)) fs::copy_file(f, to + "/" + fs::path(f).filename().string());
  return SecondsSince(t0);
}

// Drops the page cache of every file under `root` (written back first).
void DropCache(const std::string& root) {
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_regular_file()) continue;
    UniqueFd fd(::open(it->path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) continue;
    (void)::fdatasync(fd.get());
    (void)::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  }
}

std::string FsType(const std::string& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return "?";
  switch (static_cast<unsigned long>(st.f_type)) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x9123683E: return "btrfs";
    case 0x58465342: return "xfs";
    case 0x794c7630: return "overlayfs";
    default: return "fs 0x" + std::to_string(st.f_type);
  }
}

struct Row {
  uint32_t id = 0;
  uint64_t raw = 0;
  double dump_s = 0;
  uint64_t stored = 0;    // new chunk files + manifest file
  uint64_t manifest = 0;  // of which the manifest
  uint64_t new_chunks = 0;
  uint64_t patched = 0;
  double ingest_s = 0;
  double cpu_s = 0;
  double materialize_s = 0;
  double read_raw_s = 0;
  double copy_raw_s = 0;
};

struct Options {
  size_t mib = 1024;
  uint32_t snapshots = 10;
  std::string content = "heap";
  std::string store_parent = "/var/tmp";
  std::string staging_parent = "/dev/shm";
  unsigned threads = 0;
  int level = 1;
  bool sweep = false;
  bool cold = true;
};

// Snapshot 1 into empty scratch stores at several zstd levels and thread counts: what the
// defaults were chosen by (compression costs CPU at ingest; decompression is most of a
// restore's materialize time). The scratch stores live on the staging tmpfs, so that the
// figures are the codec's and not the disk's (creating files on this machine's ext4 costs
// 70-800 us each, more right after many were deleted).
void Sweep(const std::string& images, const std::string& scratch, const std::string& out, uint64_t raw) {
  std::printf("\n== compression sweep: snapshot 1 (everything new) into an empty store on tmpfs, then materialized\n");
  std::printf("%8s %8s %12s %10s %10s %12s %14s\n", "zstd", "threads", "stored/raw", "ingest s", "GiB/s", "CPU-s/GiB",
              "materialize s");
  for (int level : {-5, -1, 1, 3}) {
    for (unsigned threads : {1u, 2u}) {
      const std::string root = scratch + "/sweep";
      (void)RemoveTree(root);
      auto store = store::ChunkStore::Open(root);
      Check(store.status(), "open sweep store");
      store::IngestOptions options;
      options.zstd_level = level;
      options.threads = threads;
      auto pending = store->Ingest(images, options);
      Check(pending.status(), "sweep ingest");
      const auto s = pending->stats();
      Check(store->Commit("sweep", 1, std::move(pending).value()), "sweep commit");
      auto manifest = store->Load("sweep", 1);
      Check(manifest.status(), "sweep load");
      const auto t0 = Clock::now();
      Check(store->Materialize(*manifest, out), "sweep materialize");
      const double materialize = SecondsSince(t0);
      (void)RemoveTree(out);
      std::printf("%8d %8u %11.1f%% %10.2f %10.2f %12.3f %14.2f\n", level, threads, 100.0 * s.new_stored_bytes / raw,
                  s.wall_seconds, raw / kGiB / s.wall_seconds, s.cpu_seconds / (raw / kGiB), materialize);
      std::fflush(stdout);
    }
  }
  (void)RemoveTree(scratch + "/sweep");
  std::printf("\n");
}

int RunBench(const Options& opt) {
  if (::geteuid() != 0) throw BenchError("must run as root (criu dump)");
  ScratchDir staging(opt.staging_parent);
  ScratchDir scratch(opt.store_parent);
  const std::string root = scratch.path() + "/store";
  const std::string status_file = staging.path() + "/job.status";
  std::vector<std::string> job_argv{SelfDir() + "/store-bench-job", "--content", opt.content, std::to_string(opt.mib),
                                    status_file};
  Job job(job_argv, scratch.path() + "/job.log");
  WaitForGeneration(status_file, 1, job.pid());

  auto store = store::ChunkStore::Open(root);
  Check(store.status(), "open store");
  const unsigned threads = opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency());
  std::printf("lazarus-bench-store: a %zu MiB job (%s content), %u snapshots by raw `criu dump --leave-running`,\n"
              "1%% of its pages rewritten at random between snapshots\n",
              opt.mib, opt.content.c_str(), opt.snapshots);
  std::printf("store in %s (%s), staging in %s (%s); zstd level %d, %u threads, pieces %u..%u..%u pages\n\n",
              scratch.path().c_str(), FsType(scratch.path()).c_str(), staging.path().c_str(),
              FsType(staging.path()).c_str(), opt.level, threads, store::Chunking{}.min_pages,
              store::Chunking{}.avg_pages, store::Chunking{}.max_pages);
  std::printf("%4s %9s %7s %11s %9s %8s %7s %9s %7s %7s %9s %9s %9s\n", "snap", "raw MiB", "dump s", "stored MiB",
              "% of raw", "patched", "chunks", "ingest s", "GiB/s", "CPU-s", "CPU-s/GiB", "materl s", "read raw s");
  std::fflush(stdout);

  std::vector<Row> rows;
  std::optional<store::Manifest> prev;
  double cold_materialize = -1, cold_raw = -1, warm_raw_disk = -1;
  for (uint32_t i = 1; i <= opt.snapshots; ++i) {
    if (i > 1) {
      ::kill(job.pid(), SIGUSR1);
      WaitForGeneration(status_file, i, job.pid());
    }
    const std::string dump = staging.path() + "/dump";
    const std::string images = dump + "/images";
    (void)RemoveTree(dump);
    fs::create_directories(images);
    Row row;
    row.id = i;
    auto t0 = Clock::now();
    if (!Run({CriuBinary(), "dump", "-t", std::to_string(job.pid()), "-D", images, "-W", dump, "-o", "dump.log",
              "--leave-running", "--shell-job"},
             dump + "/criu.out"))
    {
      auto log = ReadFile(dump + "/dump.log");
      throw BenchError("criu dump failed; its log:\n" + (log.ok() ? *log : std::string("(none)")));
    }
    row.dump_s = SecondsSince(t0);
    row.raw = DirBytes(images);
    if (i == 1 && opt.sweep) Sweep(images, staging.path(), staging.path() + "/out", row.raw);

    store::IngestOptions options;
    options.threads = opt.threads;
    options.zstd_level = opt.level;
    options.base = prev ? &*prev : nullptr;
    auto pending = store->Ingest(images, options);
    Check(pending.status(), "ingest snapshot " + std::to_string(i));
    const auto stats = pending->stats();
    Check(store->Commit("bench", i, std::move(pending).value()), "commit");
    row.manifest = fs::file_size(store->ManifestPath("bench", i));
    row.stored = stats.new_stored_bytes + row.manifest;
    row.new_chunks = stats.new_chunks;
    row.patched = stats.patched_pieces;
    row.ingest_s = stats.wall_seconds;
    row.cpu_s = stats.cpu_seconds;

    auto manifest = store->Load("bench", i);
    Check(manifest.status(), "load manifest");
    const std::string out = staging.path() + "/out";
    t0 = Clock::now();
    Check(store->Materialize(*manifest, out), "materialize");
    row.materialize_s = SecondsSince(t0);
    (void)RemoveTree(out);
    row.read_raw_s = TimeReadDir(images);
    row.copy_raw_s = TimeCopyDir(images, out);
    (void)RemoveTree(out);

    if (i == opt.snapshots && opt.cold) {
      // The last snapshot from a cold page cache, next to its raw images on the same disk.
      const std::string raw_disk = scratch.path() + "/raw-images";
      TimeCopyDir(images, raw_disk);
      DropCache(root);
      t0 = Clock::now();
      Check(store->Materialize(*manifest, out), "materialize (cold)");
      cold_materialize = SecondsSince(t0);
      (void)RemoveTree(out);
      DropCache(raw_disk);
      cold_raw = TimeReadDir(raw_disk);
      warm_raw_disk = TimeReadDir(raw_disk);
      (void)RemoveTree(raw_disk);
    }
    (void)RemoveTree(dump);  // staging holds one image at a time
    prev = std::move(manifest).value();

    std::printf("%4u %9.1f %7.2f %11.2f %8.2f%% %8lu %7lu %9.2f %7.2f %7.2f %9.3f %9.2f %9.3f\n", i, row.raw / kMiB,
                row.dump_s, row.stored / kMiB, 100.0 * row.stored / row.raw, static_cast<unsigned long>(row.patched),
                static_cast<unsigned long>(row.new_chunks), row.ingest_s, row.raw / kGiB / row.ingest_s, row.cpu_s,
                row.cpu_s / (row.raw / kGiB), row.materialize_s, row.read_raw_s);
    std::fflush(stdout);
    rows.push_back(row);
  }

  auto verify = store->Verify();
  Check(verify.status(), "verify");
  const auto [store_bytes, store_allocated] = TreeUsage(root + "/chunks");
  uint64_t raw_total = 0;
  for (const auto& r : rows) raw_total += r.raw;

  std::vector<double> fraction, gibps, cpu_per_gib, materialize, read_raw, copy_raw, materialize_gibps, manifest;
  for (const auto& r : rows) {
    if (r.id == 1 && rows.size() > 1) continue;
    fraction.push_back(100.0 * r.stored / r.raw);
    manifest.push_back(static_cast<double>(r.manifest));
    gibps.push_back(r.raw / kGiB / r.ingest_s);
    cpu_per_gib.push_back(r.cpu_s / (r.raw / kGiB));
  }
  for (const auto& r : rows) {
    materialize.push_back(r.materialize_s);
    read_raw.push_back(r.read_raw_s);
    copy_raw.push_back(r.copy_raw_s);
    materialize_gibps.push_back(r.raw / kGiB / r.materialize_s);
  }
  const Row& first = rows.front();
  const double first_raw = static_cast<double>(first.raw);
  const std::string span = rows.size() > 1 ? "snapshots 2.." + std::to_string(rows.size()) : "snapshot 1";
  std::printf("\n== figures (medians over %s)\n", span.c_str());
  std::printf("  stored per snapshot (new chunks + manifest) / raw image     %6.2f %%  (max %.2f %%; goal <= 3 %%)\n",
              Median(fraction), fraction.empty() ? 0 : *std::max_element(fraction.begin(), fraction.end()));
  std::printf("    of which the manifest                                     %6.0f KiB (%.2f %%)\n", Median(manifest) / 1024,
              100.0 * Median(manifest) / first_raw);
  std::printf("  ingest throughput                                           %6.2f GiB/s\n", Median(gibps));
  std::printf("  ingest CPU                                                  %6.3f CPU-s/GiB  (criu-image-streamer capture: 0.1 CPU-s/GB)\n",
              Median(cpu_per_gib));
  std::printf("  snapshot 1 (everything new): stored %.1f %% of raw, ingest %.2f GiB/s, %.2f CPU-s/GiB, %lu chunk files\n",
              100.0 * first.stored / first.raw, first.raw / kGiB / first.ingest_s, first.cpu_s / (first.raw / kGiB),
              static_cast<unsigned long>(first.new_chunks));
  std::printf("  materialize into tmpfs (warm cache, all snapshots)          %6.2f s  (%.2f GiB/s)\n", Median(materialize),
              Median(materialize_gibps));
  std::printf("    vs reading the raw image dir on tmpfs                     %6.3f s  (materialize / read = %.1fx)\n",
              Median(read_raw), Median(materialize) / std::max(Median(read_raw), 1e-9));
  std::printf("    vs copying the raw image dir tmpfs -> tmpfs               %6.3f s  (materialize / copy = %.1fx)\n",
              Median(copy_raw), Median(materialize) / std::max(Median(copy_raw), 1e-9));
  if (cold_materialize >= 0) {
    std::printf("  last snapshot, cold page cache: materialize %.2f s; raw image dir on %s: read cold %.2f s, warm %.2f s\n",
                cold_materialize, FsType(scratch.path()).c_str(), cold_raw, warm_raw_disk);
  }
  std::printf("  store after %zu snapshots: %.1f MiB in chunk files (%.1f MiB allocated) vs %.1f MiB of raw images (%.1f %%)\n",
              rows.size(), store_bytes / kMiB, store_allocated / kMiB, raw_total / kMiB, 100.0 * store_allocated / raw_total);
  std::printf("  verify: %lu chunks, %lu snapshots, %s\n", static_cast<unsigned long>(verify->chunks_checked),
              static_cast<unsigned long>(verify->snapshots_checked), verify->ok() ? "all intact" : "DAMAGE FOUND");
  return verify->ok() ? 0 : 1;
}

}  // namespace
}  // namespace lazarus::bench

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  lazarus::bench::Options opt;
  bool quick = false, no_cold = false;
  po::options_description desc("lazarus-bench-store: snapshot store figures next to raw criu dumps");
  desc.add_options()("help", "this text")("quick", po::bool_switch(&quick), "256 MiB, 3 snapshots, no cold-cache figures")(
      "mib", po::value(&opt.mib), "job size in MiB (1024)")("snapshots", po::value(&opt.snapshots), "snapshots (10)")(
      "content", po::value(&opt.content), "heap (compressible, default) or random")(
      "store-dir", po::value(&opt.store_parent), "where the store goes (/var/tmp)")(
      "staging-dir", po::value(&opt.staging_parent), "tmpfs for CRIU's images (/dev/shm)")(
      "threads", po::value(&opt.threads), "ingest threads (0: one per CPU)")("level", po::value(&opt.level), "zstd level (1)")(
      "sweep", po::bool_switch(&opt.sweep), "also try zstd levels and thread counts on snapshot 1")(
      "no-cold", po::bool_switch(&no_cold), "skip the cold-cache figures");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "lazarus-bench-store: " << e.what() << "\n" << desc;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  if (quick) {
    if (!vm.count("mib")) opt.mib = 256;
    if (!vm.count("snapshots")) opt.snapshots = 3;
    no_cold = true;
  }
  opt.cold = !no_cold;
  if (opt.snapshots < 1 || opt.mib < 1) {
    std::cerr << "lazarus-bench-store: --mib and --snapshots must be at least 1\n";
    return 2;
  }
  try {
    return lazarus::bench::RunBench(opt);
  } catch (const std::exception& e) {
    std::cerr << "lazarus-bench-store: error: " << e.what() << "\n";
    return 1;
  }
}
