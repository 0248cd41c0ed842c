// Runs independent work items on a few threads and measures the CPU time they used.
#pragma once

#include <cstddef>
#include <functional>

namespace lazarus::store {

// Calls fn(item, worker) for every item in [0, items), on at most `threads` threads (the
// caller's thread is worker 0; worker < threads). Items are handed out in order, one at a
// time. Returns the CPU seconds of the threads it started (the caller's own share shows in
// its ThreadCpuSeconds()). If a thread cannot be started, the others do its share. fn must
// not throw.
double ParallelFor(size_t items, unsigned threads, const std::function<void(size_t item, unsigned worker)>& fn);

// CPU seconds used so far by the calling thread.
double ThreadCpuSeconds();

// `requested`, or the number of CPUs when it is 0.
unsigned ResolveThreads(unsigned requested);
// `requested`, or, when it is 0, enough threads to keep a disk busy with small reads while
// others decompress: 4 per CPU, at least 8 (a cold restore of 256 MiB took 0.53 s with 2
// threads and 0.33 s with 8 on a 2-CPU machine; warm it made no difference).
unsigned ResolveIoThreads(unsigned requested);

}  // namespace lazarus::store
