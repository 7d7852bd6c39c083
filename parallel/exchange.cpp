// Ring, all-gather and recursive-doubling schedules of the exclusive scan.
#include "parallel/exchange.h"

#include <algorithm>

#include "core/error.h"

namespace lightring::parallel {

namespace {

// Scan-order view of a group: position v <-> rank.
struct Order {
  int P;
  bool reverse;
  int rank_of(int v) const { return reverse ? P - 1 - v : v; }
};

struct Scan {
  comm::Communicator& comm;
  const ScanSpec& s;
  Order order;
  int v;
  size_t count;

  int64_t len(int u) const { return s.lengths[order.rank_of(u)]; }
  // Whether position u's pair scalar is 0 (ScanSpec::resets).
  bool reset(int u) const { return !s.resets.empty() && s.resets[order.rank_of(u)] != 0; }
  // Whether any position in [lo, hi] has a reset (false when lo > hi).
  bool reset_in(int lo, int hi) const {
    for (int u = std::max(lo, 0); u <= hi; ++u)
      if (reset(u)) return true;
    return false;
  }
  // Σ len over positions [lo, hi] (empty when lo > hi).
  int64_t len_range(int lo, int hi) const {
    int64_t n = 0;
    for (int u = std::max(lo, 0); u <= hi; ++u) n += len(u);
    return n;
  }
  // y += λ^n · x
  void axpy(float* y, const float* x, int64_t n) const {
    kernels::axpy_decay(s.device, y, x, s.decay, s.batch, s.heads, s.per_head, n, s.stream);
  }
  void send_recv(const float* send, int send_pos, float* recv, int recv_pos) const {
    std::vector<comm::SendOp> sends;
    std::vector<comm::RecvOp> recvs;
    if (send) sends.push_back({order.rank_of(send_pos), send, count});
    if (recv) recvs.push_back({order.rank_of(recv_pos), recv, count});
    comm.send_recv(sends, recvs, s.stream);
  }

  // P-1 dependent hops: receive excl from v-1, send excl ⊕ (a_v, X_v) to v+1
  // (X_v alone when v has a reset: a_v = 0).
  int ring(const float* x, float* excl) const {
    const int P = order.P;
    if (v == 0) {
      kernels::fill_zero(s.device, excl, count, s.stream);
      send_recv(x, 1, nullptr, -1);
      return 1;
    }
    send_recv(nullptr, -1, excl, v - 1);
    if (v == P - 1) return 0;
    if (reset(v)) {
      send_recv(x, v + 1, nullptr, -1);
      return 1;
    }
    kernels::StateBuffer out(s.device, count, s.stream);
    kernels::copy_state(s.device, out.data(), x, count, s.stream);
    axpy(out.data(), excl, len(v));  // S_out = a_v·S_in + X_v
    send_recv(out.data(), v + 1, nullptr, -1);
    return 1;
  }

  // One all-gather of every X, then a local fold of the positions before v,
  // nearest first, ending after the nearest position with a reset.
  int allgather(const float* x, float* excl) const {
    kernels::StateBuffer all(s.device, count * order.P, s.stream);
    comm.all_gather(x, all.data(), count, s.stream);
    kernels::fill_zero(s.device, excl, count, s.stream);
    int64_t span = 0;  // length strictly between u and v
    for (int u = v - 1; u >= 0; --u) {
      axpy(excl, all.data() + static_cast<size_t>(order.rank_of(u)) * count, span);
      if (reset(u)) break;
      span += len(u);
    }
    return order.P - 1;
  }

  // Recursive doubling (Hillis–Steele): after the round of distance d, acc
  // covers positions [v-2d+1, v] and excl covers [v-2d+1, v-1]. Each round
  // sends acc to v+d and combines the window received from v-d into both:
  //   (a_R, R) ⊕ (a_acc, acc) = (a_R·a_acc, a_acc·R + acc), the same for excl,
  // where a_acc = 0 when acc's window holds a reset (R then does not enter).
  int scan(const float* x, float* excl) const {
    const int P = order.P;
    kernels::StateBuffer acc(s.device, count, s.stream), recv(s.device, count, s.stream);
    kernels::copy_state(s.device, acc.data(), x, count, s.stream);
    kernels::fill_zero(s.device, excl, count, s.stream);
    int64_t len_acc = len(v), len_excl = 0;
    int sent = 0;
    for (int d = 1; d < P; d <<= 1) {
      const bool to = v + d < P, from = v - d >= 0;
      send_recv(to ? acc.data() : nullptr, v + d, from ? recv.data() : nullptr, v - d);
      sent += to ? 1 : 0;
      if (!from) continue;
      const int64_t len_r = len_range(v - 2 * d + 1, v - d);
      if (!reset_in(v - d + 1, v - 1)) axpy(excl, recv.data(), len_excl);
      if (!reset_in(v - d + 1, v)) axpy(acc.data(), recv.data(), len_acc);
      len_excl += len_r;
      len_acc += len_r;
    }
    return sent;
  }
};

}  // namespace

int exclusive_scan(comm::Communicator& comm, Schedule schedule, const ScanSpec& spec,
                   const float* x, float* excl) {
  const int P = comm.size();
  LR_CHECK(static_cast<int>(spec.lengths.size()) == P, "exclusive_scan: ", spec.lengths.size(),
           " lengths for a group of ", P);
  LR_CHECK(spec.resets.empty() || static_cast<int>(spec.resets.size()) == P,
           "exclusive_scan: ", spec.resets.size(), " reset flags for a group of ", P);
  Order order{P, spec.reverse};
  const int v = spec.reverse ? P - 1 - comm.rank() : comm.rank();
  const size_t count = static_cast<size_t>(spec.batch * spec.heads * spec.per_head);
  Scan scan{comm, spec, order, v, count};
  if (P == 1) {
    kernels::fill_zero(spec.device, excl, count, spec.stream);
    return 0;
  }
  switch (schedule) {
    case Schedule::kRing:
      return scan.ring(x, excl);
    case Schedule::kAllGather:
      return scan.allgather(x, excl);
    case Schedule::kScan:
      return scan.scan(x, excl);
    case Schedule::kAuto:
      break;
  }
  LR_THROW("exclusive_scan: resolve Schedule::kAuto with choose_schedule() first");
}

}  // namespace lightring::parallel
