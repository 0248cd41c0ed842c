// The replay engine: the replay index built at each incarnation change, the per-channel
// cursors, and the effect protocol of engine.h.
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "client-lib/src/runtime.h"
#include "effectlog/reader.h"
#include "lazarus/lazarus.h"

namespace lazarus::client {

using effectlog::AppendArgs;
using effectlog::AppendCode;
using effectlog::LogPosition;
using effectlog::RecordType;

struct ReplayRecord {
  uint64_t seq;
  uint64_t payload_offset;  // into ReplayIndex::arena
  LogPosition position;
  Digest128 digest;
  uint32_t kind;
  uint32_t payload_size;
  uint16_t type;
};

struct ChannelReplay {
  std::vector<ReplayRecord> records;  // by sequence; the first occurrence of each in log order
};

// What a restored process replays: for every channel, its records from the sequence the
// channel had reached in this memory (0 for channels not created yet). Immutable once
// published.
struct ReplayIndex {
  uint64_t incarnation = 0;
  std::unordered_map<uint32_t, ChannelReplay> channels;
  std::vector<uint8_t> arena;  // payloads
  uint64_t records = 0;
  uint64_t duplicates = 0;
};

namespace {

std::mutex g_index_mu;                       // one builder at a time
std::atomic<ReplayIndex*> g_index{nullptr};  // the current index
std::atomic<uint64_t> g_generation{0};       // bumped with each new index
// The index before the current one stays allocated: a thread that a snapshot froze while
// it read a record of it may still finish doing so after the next restore. Older ones are
// freed (every thread of this memory has moved past them).
ReplayIndex* g_previous_index = nullptr;

const uint8_t* PayloadOf(const ReplayIndex* index, const ReplayRecord& r) {
  return index->arena.data() + r.payload_offset;
}

// ---- reports ------------------------------------------------------------------------------
const char* TypeName(uint16_t type) {
  switch (static_cast<RecordType>(type)) {
    case RecordType::kIntent: return "INTENT";
    case RecordType::kResult: return "RESULT";
    case RecordType::kSnapshotAt: return "SNAPSHOT_AT";
    case RecordType::kIncarnationBegan: return "INCARNATION_BEGAN";
  }
  return "unknown type";
}

}  // namespace

// Shows `data` as text: printable ASCII as is, the rest as \xHH.
void AppendPreview(char* out, size_t cap, const void* data, size_t size, size_t max) noexcept {
  size_t len = std::strlen(out);
  const auto* p = static_cast<const uint8_t*>(data);
  auto put = [&](const char* s) {
    const size_t n = std::strlen(s);
    if (len + n + 1 >= cap) return;
    std::memcpy(out + len, s, n + 1);
    len += n;
  };
  put("\"");
  for (size_t i = 0; i < size && i < max; ++i) {
    char c[8];
    if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\') {
      c[0] = static_cast<char>(p[i]);
      c[1] = '\0';
    } else if (p[i] == '\n') {
      std::snprintf(c, sizeof c, "\\n");
    } else {
      std::snprintf(c, sizeof c, "\\x%02x", p[i]);
    }
    put(c);
  }
  put(size > max ? "\"..." : "\"");
}

namespace {

void AppendKind(char* out, size_t cap, uint32_t kind) {
  const size_t len = std::strlen(out);
  const char* name = KindNameOf(kind);
  std::snprintf(out + len, cap - len, "kind 0x%08" PRIx32 " (%s)", kind, name != nullptr ? name : "unnamed");
}

void AppendDigest(char* out, size_t cap, const Digest128& d) {
  const size_t len = std::strlen(out);
  std::snprintf(out + len, cap - len, " digest %016" PRIx64 "%016" PRIx64, d.high, d.low);
}

void AppendText(char* out, size_t cap, const char* text) {
  const size_t len = std::strlen(out);
  std::snprintf(out + len, cap - len, "%s", text);
}

void ReportHeader(char* out, size_t cap, const char* what, const Channel* ch, uint64_t seq) {
  std::snprintf(out, cap,
                "lazarus: %s\n"
                "lazarus:   job %s, incarnation %" PRIu64 ", channel %" PRIu32 ", sequence %" PRIu64 "\n",
                what, g_runtime.job[0] != '\0' ? g_runtime.job : "-",
                g_lazarus.seen_incarnation.load(std::memory_order_relaxed), ch->id, seq);
}

void AppendLogged(char* out, size_t cap, const ReplayIndex* index, const ReplayRecord* r) {
  AppendText(out, cap, "lazarus:   the log holds:       ");
  if (r == nullptr) {
    AppendText(out, cap, "no record\n");
    return;
  }
  AppendText(out, cap, TypeName(r->type));
  AppendText(out, cap, " ");
  AppendKind(out, cap, r->kind);
  AppendDigest(out, cap, r->digest);
  const size_t len = std::strlen(out);
  std::snprintf(out + len, cap - len, ", %" PRIu32 " bytes: ", r->payload_size);
  if (r->kind >= kShimKindBase && g_runtime.shim.describe != nullptr) {
    const size_t at = std::strlen(out);
    g_runtime.shim.describe(r->kind, r->type, PayloadOf(index, *r), r->payload_size, out + at, cap - at);
  } else {
    AppendPreview(out, cap, PayloadOf(index, *r), r->payload_size, 64);
  }
  const size_t len2 = std::strlen(out);
  std::snprintf(out + len2, cap - len2, " at segment %" PRIu64 " offset %" PRIu64 "\n", r->position.segment,
                r->position.offset);
}

void AppendAsked(char* out, size_t cap, RecordType type, const EffectSpec& spec) {
  AppendText(out, cap, "lazarus:   the program asked:   ");
  AppendText(out, cap, TypeName(static_cast<uint16_t>(type)));
  AppendText(out, cap, " ");
  AppendKind(out, cap, spec.kind);
  AppendDigest(out, cap, spec.digest);
  if (spec.request_size > 0) {
    const size_t len = std::strlen(out);
    std::snprintf(out + len, cap - len, ", request %" PRIu32 " bytes ", spec.request_size);
    AppendPreview(out, cap, spec.request, spec.request_size, 64);
  }
  AppendText(out, cap, "\n");
}

[[noreturn]] void Diverge(const Channel* ch, uint64_t seq, const ReplayRecord* logged, RecordType want,
                          const EffectSpec& spec, const char* why) {
  char report[4096];
  ReportHeader(report, sizeof report, "replay diverged from the effect log", ch, seq);
  AppendLogged(report, sizeof report, g_index.load(std::memory_order_acquire), logged);
  AppendAsked(report, sizeof report, want, spec);
  AppendText(report, sizeof report, "lazarus:   ");
  AppendText(report, sizeof report, why);
  AppendText(report, sizeof report, "\n");
  StopJob(LAZARUS_EXIT_DIVERGED, report);
}

// A logged record must be what the program asks for now: same type, kind and request.
void Check(const ReplayRecord* r, RecordType want, const Channel* ch, uint64_t seq, const EffectSpec& spec) {
  if (r->type != static_cast<uint16_t>(want))
    Diverge(ch, seq, r, want, spec, "the record type differs: the program performs another kind of effect here");
  if (r->kind != spec.kind) Diverge(ch, seq, r, want, spec, "the effect kind differs");
  if (r->digest != spec.digest) Diverge(ch, seq, r, want, spec, "the request differs (its digest does not match)");
}

// ---- the index ------------------------------------------------------------------------------
struct BuildResult {
  std::unique_ptr<ReplayIndex> index;
  effectlog::ReadEnd end;
  std::string error;
};

BuildResult BuildIndex(uint64_t incarnation) {
  BuildResult out;
  auto index = std::make_unique<ReplayIndex>();
  index->incarnation = incarnation;
  // Where each channel this memory knows has got to. Channels created later start at 0.
  std::unordered_map<uint32_t, uint64_t> start;
  const uint32_t slots = std::min(g_runtime.next_slot.load(std::memory_order_acquire), kMaxChannels);
  for (uint32_t i = 0; i < slots; ++i) {
    Channel& ch = g_runtime.channels[i];
    // A slot claimed by a thread that is attaching right now may still read as id 0, seq 0.
    uint64_t& at = start[ch.id];
    at = std::max(at, effectlog::Atomic(ch.next_seq).load(std::memory_order_acquire));
  }
  auto reader = effectlog::Reader::Open(g_runtime.log_dir);
  if (!reader.ok()) {
    out.error = reader.status().message();
    return out;
  }
  effectlog::RecordView r;
  while ((*reader)->Next(&r)) {
    if (r.channel == effectlog::kDaemonChannel) continue;
    if (r.type != static_cast<uint16_t>(RecordType::kIntent) && r.type != static_cast<uint16_t>(RecordType::kResult))
      continue;  // types this version does not know are skipped (FORMAT.md)
    const auto it = start.find(r.channel);
    if (r.sequence < (it != start.end() ? it->second : 0)) continue;  // before this memory's point
    ReplayRecord rec;
    rec.seq = r.sequence;
    rec.payload_offset = index->arena.size();
    rec.position = r.position;
    rec.digest = r.digest;
    rec.kind = r.kind;
    rec.payload_size = r.payload_size;
    rec.type = r.type;
    index->arena.insert(index->arena.end(), r.payload, r.payload + r.payload_size);
    index->channels[r.channel].records.push_back(rec);
  }
  out.end = (*reader)->end();
  for (auto& [id, ch] : index->channels) {
    auto& v = ch.records;
    // Log order within a channel is sequence order except after a restore between a
    // check and an append; keep the first occurrence of each sequence.
    std::stable_sort(v.begin(), v.end(), [](const ReplayRecord& a, const ReplayRecord& b) { return a.seq < b.seq; });
    const size_t before = v.size();
    v.erase(std::unique(v.begin(), v.end(), [](const ReplayRecord& a, const ReplayRecord& b) { return a.seq == b.seq; }),
            v.end());
    index->duplicates += before - v.size();
    index->records += v.size();
  }
  out.index = std::move(index);
  return out;
}

void RunRestoreHooks(uint64_t incarnation) {
  const int n = std::min(g_runtime.hook_count.load(std::memory_order_acquire), kMaxRestoreHooks);
  for (int i = 0; i < n; ++i) {
    const RestoreHook h = g_runtime.hooks[i];
    if (h.fn != nullptr) h.fn(h.arg, incarnation);
  }
}

// Mirrors the replay counters into the control block, where `lazarus status` reads them.
void PublishProgress() {
  effectlog::ControlBlock* c = g_lazarus.control;
  if (c == nullptr) return;
  const Counters& k = g_lazarus.counters;
  effectlog::Atomic(c->replay_pending)
      .store(static_cast<uint64_t>(std::max<int64_t>(0, k.replay_pending.load(std::memory_order_relaxed))),
             std::memory_order_relaxed);
  effectlog::Atomic(c->effects_replayed).store(k.replayed.load(std::memory_order_relaxed), std::memory_order_relaxed);
  effectlog::Atomic(c->effects_in_doubt).store(k.in_doubt.load(std::memory_order_relaxed), std::memory_order_relaxed);
}


}  // namespace

void SlowSyncIncarnation() noexcept {
  ScopedGuard guard;
  uint64_t incarnation = 0;
  {
    std::lock_guard lock(g_index_mu);
    incarnation = effectlog::Atomic(g_lazarus.control->incarnation).load(std::memory_order_acquire);
    if (incarnation == g_lazarus.seen_incarnation.load(std::memory_order_acquire)) return;
    BuildResult built = BuildIndex(incarnation);
    if (built.index != nullptr && built.end.kind == effectlog::EndKind::kCorrupt) {
      // A thread of ours restored in the middle of an append can make a moment's bytes look
      // like damage; read once more before concluding.
      ::usleep(2000);
      built = BuildIndex(incarnation);
    }
    if (built.index == nullptr || built.end.kind == effectlog::EndKind::kCorrupt) {
      char report[PATH_MAX + 1024];
      std::snprintf(report, sizeof report,
                    "lazarus: cannot replay: the effect log %s is damaged or unreadable: %s\n"
                    "lazarus:   replay never goes past a hole; the daemon must repair or refuse this log\n",
                    g_runtime.log_dir, (built.index == nullptr ? built.error : built.end.problem).substr(0, 512).c_str());
      StopJob(LAZARUS_EXIT_NO_LOG, report);
    }
    ReplayIndex* index = built.index.release();
    for (const auto& [id, ch] : index->channels) {
      if (g_runtime.shim.observe_result == nullptr) break;
      for (const ReplayRecord& r : ch.records) {
        if (r.type == static_cast<uint16_t>(RecordType::kResult) && r.kind >= kShimKindBase)
          g_runtime.shim.observe_result(r.kind, PayloadOf(index, r), r.payload_size);
      }
    }
    if (g_runtime.shim.index_built != nullptr) g_runtime.shim.index_built();
    delete g_previous_index;
    g_previous_index = g_index.load(std::memory_order_relaxed);
    g_lazarus.counters.replay_pending.store(static_cast<int64_t>(index->records), std::memory_order_relaxed);
    if (g_lazarus.control != nullptr)
      effectlog::Atomic(g_lazarus.control->replay_total).store(index->records, std::memory_order_relaxed);
    PublishProgress();
    g_index.store(index, std::memory_order_release);
    g_generation.fetch_add(1, std::memory_order_acq_rel);
    g_lazarus.seen_incarnation.store(incarnation, std::memory_order_release);
    if (g_runtime.verbose) {
      char line[256];
      std::snprintf(line, sizeof line,
                    "lazarus: incarnation %" PRIu64 ": replaying %" PRIu64 " records on %zu channels (%" PRIu64
                    " duplicates ignored)\n",
                    incarnation, index->records, index->channels.size(), index->duplicates);
      WriteStderr(line);
    }
  }
  RunRestoreHooks(incarnation);
}

namespace {

// Points the channel's cursor into the current index (after a new one was published).
void AttachCursor(Channel* ch, uint64_t generation) {
  ch->generation = generation;
  ch->replay = nullptr;
  ch->cursor = 0;
  const ReplayIndex* index = g_index.load(std::memory_order_acquire);
  if (index == nullptr) return;
  const auto it = index->channels.find(ch->id);
  if (it == index->channels.end()) return;
  const auto& v = it->second.records;
  const uint64_t next = effectlog::Atomic(ch->next_seq).load(std::memory_order_relaxed);
  const auto pos = std::lower_bound(v.begin(), v.end(), next,
                                    [](const ReplayRecord& r, uint64_t s) { return r.seq < s; });
  // Records below the channel's sequence are not replayed (it went past them meanwhile).
  g_lazarus.counters.replay_pending.fetch_sub(pos - v.begin(), std::memory_order_relaxed);
  PublishProgress();
  if (pos == v.end()) return;
  ch->replay = &it->second;
  ch->cursor = static_cast<size_t>(pos - v.begin());
}

// The logged record of this channel with sequence `seq`, or null when the channel has
// none (it is live). Records before `seq` that nobody asked for are passed over.
const ReplayRecord* Lookup(Channel* ch, uint64_t seq, const EffectSpec& spec, RecordType want) {
  SyncIncarnation();
  const uint64_t generation = g_generation.load(std::memory_order_acquire);
  if (ch->generation != generation) AttachCursor(ch, generation);
  const ChannelReplay* replay = ch->replay;
  if (replay == nullptr) return nullptr;
  const auto& v = replay->records;
  while (ch->cursor < v.size() && v[ch->cursor].seq < seq) {
    ++ch->cursor;
    g_lazarus.counters.replay_pending.fetch_sub(1, std::memory_order_relaxed);
    PublishProgress();
  }
  if (ch->cursor == v.size()) {
    ch->replay = nullptr;  // exhausted: the channel is live from here on
    return nullptr;
  }
  const ReplayRecord* r = &v[ch->cursor];
  if (r->seq != seq) {
    Diverge(ch, seq, r, want, spec,
            "the log has no record with this sequence but holds later ones (a hole in the channel)");
  }
  return r;
}

void Consume(Channel* ch) {
  ++ch->cursor;
  g_lazarus.counters.replay_pending.fetch_sub(1, std::memory_order_relaxed);
  PublishProgress();
  if (ch->cursor == ch->replay->records.size()) ch->replay = nullptr;
}

struct Appended {
  AppendCode code = AppendCode::kOk;
  const ReplayRecord* earlier = nullptr;  // the log already held this sequence (use it)
};

// Appends one record of the channel. When the incarnation changed while it did (a restore
// put this thread between its check and its append), the log may hold an earlier record
// with the same sequence: that one counts, and ours is a duplicate readers pass over.
Appended AppendRecord(Channel* ch, uint64_t seq, RecordType type, const EffectSpec& spec, const PayloadPiece* pieces,
                      uint32_t count, uint32_t size) {
  const uint64_t synced = g_lazarus.seen_incarnation.load(std::memory_order_acquire);
  AppendArgs a;
  a.type = type;
  a.channel = ch->id;
  a.sequence = seq;
  a.kind = spec.kind;
  a.digest = spec.digest;
  a.pieces = pieces;
  a.piece_count = count;
  a.payload_size = size;
  const effectlog::AppendResult r = g_runtime.writer->Append(a);
  if (!r.ok()) return {r.code, nullptr};
  if (effectlog::Atomic(g_lazarus.control->incarnation).load(std::memory_order_acquire) != synced) {
    const ReplayRecord* logged = Lookup(ch, seq, spec, type);
    if (logged != nullptr) {
      Check(logged, type, ch, seq, spec);
      Consume(ch);
      if (logged->position != r.position) return {AppendCode::kOk, logged};
    }
  }
  return {};
}

Start Replayed(Effect* e, const ReplayRecord* r, uint64_t next_seq) {
  const ReplayIndex* index = g_index.load(std::memory_order_acquire);
  e->result = PayloadOf(index, *r);
  e->result_size = r->payload_size;
  effectlog::Atomic(e->channel->next_seq).store(next_seq, std::memory_order_release);
  g_lazarus.counters.replayed.fetch_add(1, std::memory_order_relaxed);
  PublishProgress();
  return Start::kReplayed;
}

[[noreturn]] void StopInDoubt(const Effect* e, const ReplayRecord* intent) {
  char report[4096];
  ReportHeader(report, sizeof report, "an effect with policy \"fail\" is in doubt", e->channel, e->seq);
  AppendLogged(report, sizeof report, g_index.load(std::memory_order_acquire), intent);
  AppendText(report, sizeof report,
             "lazarus:   its INTENT is logged and its RESULT is not: a previous incarnation may or may not\n"
             "lazarus:   have performed it before it crashed\n");
  StopJob(LAZARUS_EXIT_IN_DOUBT, report);
}

}  // namespace

bool ThreadIsReplaying() noexcept {
  Channel* ch = t_lazarus.channel;
  if (ch == nullptr || !IsActive()) return false;
  ScopedGuard guard;
  SyncIncarnation();
  const uint64_t generation = g_generation.load(std::memory_order_acquire);
  if (ch->generation != generation) AttachCursor(ch, generation);
  return ch->replay != nullptr;
}

Start BeginEffect(Effect* e) noexcept {
  Channel* ch = e->channel = CurrentChannel();
  const uint64_t s = e->seq = ch->next_seq;
  const EffectSpec& spec = e->spec;
  if (!spec.output) {
    if (const ReplayRecord* r = Lookup(ch, s, spec, RecordType::kResult)) {
      Check(r, RecordType::kResult, ch, s, spec);
      Consume(ch);
      return Replayed(e, r, s + 1);
    }
    return Start::kLive;
  }

  const ReplayRecord* intent = Lookup(ch, s, spec, RecordType::kIntent);
  if (intent != nullptr) {
    Check(intent, RecordType::kIntent, ch, s, spec);
    Consume(ch);
  } else {
    uint32_t size = 0;
    for (uint32_t i = 0; i < spec.summary_count; ++i) size += spec.summary[i].size;
    const Appended a = AppendRecord(ch, s, RecordType::kIntent, spec, spec.summary, spec.summary_count, size);
    if (a.code != AppendCode::kOk) {
      e->log_error = a.code;
      return Start::kLogFailed;
    }
    intent = a.earlier;
  }
  if (intent != nullptr) {
    const ReplayIndex* index = g_index.load(std::memory_order_acquire);
    e->logged_intent = PayloadOf(index, *intent);
    e->logged_intent_size = intent->payload_size;
  }

  if (const ReplayRecord* r = Lookup(ch, s + 1, spec, RecordType::kResult)) {
    Check(r, RecordType::kResult, ch, s + 1, spec);
    Consume(ch);
    return Replayed(e, r, s + 2);
  }
  if (intent == nullptr) return Start::kLive;  // our own INTENT: perform now

  // In doubt: a previous incarnation logged the INTENT and no RESULT.
  g_lazarus.counters.in_doubt.fetch_add(1, std::memory_order_relaxed);
  PublishProgress();
  switch (spec.policy) {
    case Policy::kAtLeastOnce:
      e->in_doubt = true;
      return Start::kLive;
    case Policy::kFail:
      StopInDoubt(e, intent);
    case Policy::kAtMostOnce:
      break;
  }
  const PayloadPiece piece{spec.interrupted, spec.interrupted_size};
  const Appended a = AppendRecord(ch, s + 1, RecordType::kResult, spec, &piece, 1, spec.interrupted_size);
  if (a.code != AppendCode::kOk) {
    e->log_error = a.code;
    return Start::kLogFailed;
  }
  if (a.earlier != nullptr) return Replayed(e, a.earlier, s + 2);
  effectlog::Atomic(ch->next_seq).store(s + 2, std::memory_order_release);
  return Start::kInterrupted;
}

Finish FinishEffect(Effect* e, const PayloadPiece* pieces, uint32_t count, uint32_t size) noexcept {
  Channel* ch = e->channel;
  const uint64_t rs = e->spec.output ? e->seq + 1 : e->seq;
  // Restored while performing: a previous incarnation may have recorded this RESULT, and
  // the rest of the log was produced from that one.
  if (const ReplayRecord* r = Lookup(ch, rs, e->spec, RecordType::kResult)) {
    Check(r, RecordType::kResult, ch, rs, e->spec);
    Consume(ch);
    Replayed(e, r, rs + 1);
    return Finish::kReplayed;
  }
  const Appended a = AppendRecord(ch, rs, RecordType::kResult, e->spec, pieces, count, size);
  effectlog::Atomic(ch->next_seq).store(rs + 1, std::memory_order_release);
  if (a.code != AppendCode::kOk) {
    e->log_error = a.code;
    return Finish::kLogFailed;
  }
  if (a.earlier != nullptr) {
    Replayed(e, a.earlier, rs + 1);
    return Finish::kReplayed;
  }
  g_lazarus.counters.performed.fetch_add(1, std::memory_order_relaxed);
  return Finish::kRecorded;
}

}  // namespace lazarus::client
