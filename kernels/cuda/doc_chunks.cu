// DocTables (doc_chunks.h): host construction and upload of the chunk tables.
//
// The upload goes through a small ring of pinned host buffers: a copy from pageable memory would
// synchronise the stream (the host would wait for every kernel queued before it). A slot is
// reused only after the copy that last used it has finished (its event), which with kSlots slots
// means at most one wait per kSlots passes in flight.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <vector>

#include "core/cuda_check.h"
#include "core/error.h"
#include "kernels/cuda/doc_chunks.h"

namespace lightring::kernels::cuda {

namespace {

constexpr int kSlots = 64;

struct PinnedSlot {
  void* host = nullptr;
  size_t bytes = 0;
  cudaEvent_t copied = nullptr;
};

struct PinnedRing {
  std::array<PinnedSlot, kSlots> slots{};
  int next = 0;
};

// Copies `bytes` of `src` to device `dst` on `stream` through the calling thread's ring.
void upload(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  thread_local std::map<int, PinnedRing> rings;  // per device; kept for the process' life
  int device = 0;
  LR_CUDA_CHECK(cudaGetDevice(&device));
  PinnedRing& ring = rings[device];
  PinnedSlot& slot = ring.slots[ring.next];
  ring.next = (ring.next + 1) % kSlots;
  if (slot.copied) LR_CUDA_CHECK(cudaEventSynchronize(slot.copied));
  if (slot.bytes < bytes) {
    if (slot.host) LR_CUDA_CHECK(cudaFreeHost(slot.host));
    slot.bytes = std::max(bytes, size_t{4096});
    LR_CUDA_CHECK(cudaMallocHost(&slot.host, slot.bytes));
  }
  if (!slot.copied) LR_CUDA_CHECK(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming));
  std::memcpy(slot.host, src, bytes);
  LR_CUDA_CHECK(cudaMemcpyAsync(dst, slot.host, bytes, cudaMemcpyHostToDevice, stream));
  LR_CUDA_CHECK(cudaEventRecord(slot.copied, stream));
}

// Segments of per_seg chunks: their rows, and whether a chunk of theirs starts a document.
std::vector<DocSegment> segments_of(const std::vector<DocChunk>& chunks, int per_seg) {
  std::vector<DocSegment> segs;
  for (size_t c = 0; c < chunks.size(); ++c) {
    if (c % per_seg == 0) segs.emplace_back();
    segs.back().rows += chunks[c].len;
    if (chunks[c].start_doc >= 0) segs.back().reset = 1;
  }
  return segs;
}

}  // namespace

DocTables::DocTables(const Documents& d, int64_t seqlen, int num_segs, cudaStream_t stream) {
  LR_CHECK(d.enabled(), "DocTables: no documents");
  LR_CHECK(seqlen < (int64_t{1} << 31), "CUDA documents: the shard length must be < 2^31 (got ",
           seqlen, ")");
  LR_CHECK(d.count < (int64_t{1} << 31), "CUDA documents: too many pieces (", d.count, ")");
  std::vector<DocChunk> fwd;
  fwd.reserve(static_cast<size_t>(seqlen / kChunk + d.count));
  for (int64_t i = 0; i < d.count; ++i) {
    const int64_t lo = d.offsets[i], hi = d.offsets[i + 1];
    for (int64_t t = lo; t < hi; t += kChunk) {
      DocChunk c;
      c.t0 = static_cast<int32_t>(t);
      c.len = static_cast<int32_t>(std::min<int64_t>(kChunk, hi - t));
      c.start_doc = t == lo && d.starts_document(i) ? static_cast<int32_t>(i) : -1;
      c.end_doc = t + c.len == hi && d.ends_document(i) ? static_cast<int32_t>(i) : -1;
      fwd.push_back(c);
    }
  }
  LR_CHECK(fwd.size() < (size_t{1} << 31), "CUDA documents: too many chunks (", fwd.size(), ")");
  std::vector<DocChunk> rev(fwd.rbegin(), fwd.rend());
  for (DocChunk& c : rev) {
    c.t0 = static_cast<int32_t>(seqlen - c.t0 - c.len);
    std::swap(c.start_doc, c.end_doc);
  }
  count_ = static_cast<int>(fwd.size());
  const int g = std::max(1, std::min(num_segs, count_));
  per_seg_ = (count_ + g - 1) / g;
  num_segs_ = (count_ + per_seg_ - 1) / per_seg_;
  const std::vector<DocSegment> fseg = segments_of(fwd, per_seg_),
                                rseg = segments_of(rev, per_seg_);

  // One device block: the two chunk tables, then the two segment tables (16-byte entries).
  static_assert(sizeof(DocChunk) == 16 && sizeof(DocSegment) == 16, "16-byte table entries");
  const size_t chunk_bytes = fwd.size() * sizeof(DocChunk), seg_bytes = fseg.size() * 16;
  const size_t bytes = 2 * chunk_bytes + 2 * seg_bytes;
  std::vector<unsigned char> host(bytes);
  std::memcpy(host.data(), fwd.data(), chunk_bytes);
  std::memcpy(host.data() + chunk_bytes, rev.data(), chunk_bytes);
  std::memcpy(host.data() + 2 * chunk_bytes, fseg.data(), seg_bytes);
  std::memcpy(host.data() + 2 * chunk_bytes + seg_bytes, rseg.data(), seg_bytes);
  mem_.emplace((bytes + sizeof(float) - 1) / sizeof(float), stream);
  upload(mem_->get(), host.data(), bytes, stream);
}

DocChunks DocTables::forward(const DocStates& init, const DocStates& final) const {
  const auto* base = reinterpret_cast<const unsigned char*>(mem_->get());
  DocChunks t;
  t.chunks = reinterpret_cast<const DocChunk*>(base);
  t.segs = reinterpret_cast<const DocSegment*>(base + 2 * size_t(count_) * sizeof(DocChunk));
  t.count = count_;
  t.per_seg = per_seg_;
  t.init = init;
  t.final = final;
  return t;
}

DocChunks DocTables::reversed(const DocStates& init, const DocStates& final) const {
  DocChunks t = forward(init, final);
  t.chunks += count_;
  t.segs += num_segs_;
  return t;
}

DocStates doc_states(const float* states, int64_t heads, int64_t rows, int64_t cols,
                     bool transposed) {
  if (!states) return DocStates{};
  return DocStates{user_state(states, rows, cols, transposed), heads * rows * cols};
}

}  // namespace lightring::kernels::cuda
