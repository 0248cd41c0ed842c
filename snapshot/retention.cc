#include "snapshot/retention.h"

#include <algorithm>
#include <map>
#include <set>

namespace lazarus::store {

std::vector<uint32_t> SelectForDeletion(const std::vector<SnapshotSummary>& snapshots, const RetentionPolicy& policy) {
  std::vector<const SnapshotSummary*> order;
  for (const auto& s : snapshots) order.push_back(&s);
  // Newest = created last; the id breaks ties (ids grow with time within a job).
  std::sort(order.begin(), order.end(), [](const SnapshotSummary* a, const SnapshotSummary* b) {
    return a->created_unix_ms != b->created_unix_ms ? a->created_unix_ms < b->created_unix_ms
                                                    : a->snapshot_id < b->snapshot_id;
  });
  std::set<uint32_t> keep;
  const size_t keep_last = std::max<uint32_t>(policy.keep_last, 1);
  for (size_t i = order.size() > keep_last ? order.size() - keep_last : 0; i < order.size(); ++i)
    keep.insert(order[i]->snapshot_id);
  if (policy.keep_every_seconds > 0) {
    const int64_t period_ms = policy.keep_every_seconds * 1000;
    std::map<int64_t, uint32_t> first_of_period;  // period -> oldest snapshot in it
    for (const auto* s : order) {
      const int64_t period = s->created_unix_ms >= 0 ? s->created_unix_ms / period_ms : -1;
      first_of_period.try_emplace(period, s->snapshot_id);
    }
    for (const auto& [period, id] : first_of_period) keep.insert(id);
  }
  std::vector<uint32_t> out;
  for (const auto* s : order)
    if (!keep.count(s->snapshot_id)) out.push_back(s->snapshot_id);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace lazarus::store
