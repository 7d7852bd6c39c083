// IpcTransport: state messages between GPUs of one host over CUDA IPC and the
// copy engines, with no kernel launched (part of NcclCommunicator; built with
// NCCL, used where every rank has a host channel).
//
// Why: NCCL's send/recv kernels keep more stack per thread than the 1 KB
// default, so their first launch makes the driver grow the per-thread stack
// reservation of the whole GPU (stack size x every resident thread of every
// SM, docs/scaling.md); and the channel cap ("lean" NCCL) lowers the bandwidth
// of one hop. Copy engines need neither SMs nor a stack (measurements of both
// in bench/NOTES.md).
//
// Protocol, per ordered pair (sender s, receiver r), on the communicator's
// own stream; chunk k = 1, 2, ... counts the pair's chunks over the life of
// the transport (both sides count the same: every send has a matching
// receive of the same size), slot = k mod kSlots:
//   s: wait   ack_s[r] >= k - kSlots         (r emptied the slot)
//      copy   data -> inbox_r[s][slot]       (peer copy, copy engine)
//      signal ready_r[s] = k                 (4-byte peer copy of a local word)
//   r: wait   ready_r[s] >= k
//      copy   inbox_r[s][slot] -> destination (local copy)
//      signal ack_s[r] = k
// Waits are a one-thread kernel polling a local device word (ipc_wait.h),
// signals a cuStreamWriteValue32 of a local word followed by a 4-byte
// cudaMemcpyAsync to the peer's word (stream order puts it after the data). A message longer
// than a slot goes in chunks, rounds of one chunk per pair and direction:
// all of a rank's sends of round j are enqueued before its receives of round
// j, so a send waits only for receives of earlier rounds and no cycle exists.
//
// Failure: release() makes every pending and later wait return at once (a
// host store to a mapped flag the wait kernels poll) so that an aborted
// communicator's stream drains; the data then is garbage and the communicator
// throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct CUstream_st;

namespace lightring::comm {

class Communicator;

class IpcTransport {
 public:
  // Bytes of one inbox slot; a message of more bytes goes in chunks.
  static constexpr size_t kSlotBytes = size_t{4} << 20;
  static constexpr int kSlots = 2;

  // Collective over `host` (a host communicator of the same ranks, in the
  // same order): finds the ranks on this host, allocates the inbox and the
  // signal words on `device`, exchanges IPC handles and opens the peers'.
  // A pair whose handles cannot be opened (another host, no peer access)
  // is not usable; usable() says which peers are. Returns nullptr on every
  // rank when any rank passed enabled = false (LIGHTRING_COMM_IPC=0 there).
  static std::unique_ptr<IpcTransport> create(Communicator& host, int rank, int size, int device,
                                              bool enabled);
  ~IpcTransport();
  IpcTransport(const IpcTransport&) = delete;
  IpcTransport& operator=(const IpcTransport&) = delete;

  bool usable(int peer) const {
    return peer >= 0 && peer < size_ && peer != rank_ && peers_[peer].usable;
  }
  int usable_peers() const;

  struct Message {
    int peer;
    void* data;  // const for sends
    size_t bytes;
  };
  // Enqueues the sends and receives of one step on `stream` (the rounds above).
  // Every peer must be usable().
  void send_recv(const std::vector<Message>& sends, const std::vector<Message>& recvs,
                 CUstream_st* stream);

  // Makes every wait enqueued so far (and later) return; after a failure only.
  void release();

  // Collective: after every rank drained the streams that used the transport,
  // the barrier over `host` guarantees no peer writes into this rank's words
  // any more; then the buffers are freed. Without close() (an aborted
  // communicator) the exported buffers are left allocated: a peer may still
  // write into them.
  void close(Communicator& host);

 private:
  IpcTransport() = default;

  struct Peer {
    bool same_host = false;
    bool usable = false;
    int inbox_index = -1;              // this rank's index in the peer's inbox (sender side)
    int my_inbox_index = -1;           // the peer's index in this rank's inbox (receiver side)
    char* remote_inbox = nullptr;      // the peer's inbox (opened handle)
    uint32_t* remote_words = nullptr;  // the peer's signal words (opened handle)
    uint32_t sent = 0, received = 0;   // chunks so far, this rank -> peer and peer -> this rank
  };

  static void unmap(Peer& p);  // closes the peer's opened handles, if any
  void send_chunk(int peer, const char* src, size_t bytes, CUstream_st* stream);
  void recv_chunk(int peer, char* dst, size_t bytes, CUstream_st* stream);
  // *remote = value, after the work already on `stream`.
  void signal(uint32_t* remote, uint32_t* local_word, uint32_t value, CUstream_st* stream);
  void wait_geq(const uint32_t* word, uint32_t value, CUstream_st* stream);

  int rank_ = 0, size_ = 1, device_ = 0;
  std::vector<Peer> peers_;
  // This rank's words: [0, size) ready (written by sender g), [size, 2 size)
  // ack (written by receiver g), [2 size, 4 size) local signal sources.
  uint32_t* words_ = nullptr;
  char* inbox_ = nullptr;  // [same-host peers][kSlots][kSlotBytes]
  int* abort_ = nullptr;   // pinned, mapped: release() sets it, the wait kernels poll it
  bool closed_ = false;
};

}  // namespace lightring::comm
