// The wait of the CUDA IPC transport (comm/ipc_transport.h): one GPU thread on
// `stream` polls `word`, which a peer's copy engine writes, until
// (int32_t)(*word - value) >= 0 (a cyclic comparison: counters may wrap), or
// until the host sets `*abort` (pinned, mapped host memory) after a failure.
//
// A kernel rather than cuStreamWaitValue32: a stream blocked in a wait-value
// can only be released by a write that the GPU executes, and that write may be
// queued behind the blocked stream on the same hardware queue; a host store to
// mapped memory needs no queue. The kernel uses no stack (NCCL's kernels made
// the driver grow the per-thread stack reservation; this one does not).
#pragma once

#include <cstdint>

struct CUstream_st;

namespace lightring::comm {

void ipc_wait(const uint32_t* word, uint32_t value, const int* abort, CUstream_st* stream);

}  // namespace lightring::comm
