// Sequence-parallel forward and backward (docs/algorithm.md §3; see
// parallel/sequence_parallel.h for the contract).
#include "parallel/sequence_parallel.h"

#include <chrono>

#include "kernels/backend.h"
#include "kernels/error.h"
#include "parallel/agreement.h"
#include "parallel/exchange.h"
#include "parallel/state_ops.h"

namespace lightring::parallel {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

size_t state_count(const kernels::Problem& p) {
  return static_cast<size_t>(p.batch * p.heads * p.qk_dim * p.v_dim);
}

void check_memory_space(const comm::Communicator& comm, const kernels::Problem& p) {
  const bool device = p.device == kernels::Device::kCuda;
  const bool comm_device = comm.memory_space() == comm::MemorySpace::kDevice;
  LR_CHECK(device == comm_device, "the input is on ", kernels::device_name(p.device), " but the ",
           comm.backend_name(), " communicator moves ", comm_device ? "device" : "host",
           " buffers: use MpiCommunicator for Device::kCpu and NcclCommunicator for Device::kCuda");
}

ScanSpec make_spec(const kernels::Problem& p, std::vector<int64_t> lengths, bool reverse) {
  ScanSpec s;
  s.device = p.device;
  s.stream = p.stream;
  s.batch = p.batch;
  s.heads = p.heads;
  s.per_head = p.qk_dim * p.v_dim;
  s.decay = p.decay;  // stays where it is: the combines read it (no host copy, no sync)
  s.lengths = std::move(lengths);
  s.reverse = reverse;
  return s;
}

kernels::StateParams state_params(const kernels::Problem& p, kernels::StateKind kind, const void* x,
                                  kernels::Strides xs, const void* y, kernels::Strides ys,
                                  float* out) {
  kernels::StateParams sp;
  static_cast<kernels::Problem&>(sp) = p;
  sp.kind = kind;
  sp.x = x;
  sp.y = y;
  sp.x_stride = xs;
  sp.y_stride = ys;
  sp.state = out;
  return sp;
}

}  // namespace

Report forward(comm::Communicator& comm, const kernels::ForwardParams& p, float* s_in,
               const Options& options) {
  const int P = comm.size(), r = comm.rank();
  const bool first = r == 0;

  // 1. The local pair (a_r, A_r) from K and V alone, before any exchange. A
  //    local failure is reported through the agreement, not thrown here, so
  //    that no peer is left waiting. The prefix is exclusive: no rank consumes
  //    the last rank's pair, so that rank skips the pass over K and V and
  //    contributes zeros (every schedule only forwards it to positions >= P).
  const bool pair_consumed = r != P - 1;
  LocalInput in{&p, "", p.initial_state != nullptr, false};
  StateBuffer x;
  try {
    LR_CHECK(s_in != nullptr, "forward: s_in must point to a [B,H,D,E] fp32 buffer");
    check_memory_space(comm, p);
    kernels::validate(p);
    x = StateBuffer(p.device, state_count(p), p.stream);
    if (pair_consumed) {
      kernels::local_state(state_params(p, kernels::StateKind::kForward, p.k, p.k_stride, p.v,
                                        p.v_stride, x.data()));
    } else {
      fill_zero(p.device, x.data(), state_count(p), p.stream);
    }
  } catch (const Error& e) {
    in.error = e.what();
  }
  const ScanSpec spec = make_spec(p, agree_on_shapes(comm, in, "forward"), /*reverse=*/false);
  const size_t count = state_count(p);

  // Fold the global S0 into rank 0's pair: X_0 = a_0·S0 + A_0.
  if (first && p.initial_state && pair_consumed)
    axpy_decay(p.device, x.data(), p.initial_state, p.decay, p.batch, p.heads, spec.per_head,
               p.seqlen, p.stream);

  // 2. S_in(r) = exclusive prefix.
  Report rep;
  rep.schedule = choose_schedule(options.schedule, P, count * sizeof(float), options.link);
  rep.message_bytes = count * sizeof(float);
  const auto t0 = Clock::now();
  record_event(p.device, options.exchange_begin_event, p.stream);
  rep.messages = exclusive_scan(comm, rep.schedule, spec, x.data(), s_in);
  record_event(p.device, options.exchange_end_event, p.stream);
  rep.exchange_ms = ms_since(t0);
  if (first && p.initial_state) copy_state(p.device, s_in, p.initial_state, count, p.stream);

  // 3. The main local pass from S_in(r); its final state is S_out(r), the
  //    global final state on the last rank.
  kernels::ForwardParams fp = p;
  fp.initial_state = (first && !p.initial_state) ? nullptr : s_in;
  kernels::forward(fp);
  return rep;
}

Report backward(comm::Communicator& comm, const kernels::BackwardParams& p,
                const Options& options) {
  const int P = comm.size(), r = comm.rank();
  const bool last = r == P - 1;

  // 1. The local pair (a_r, C_r) from Q and dO alone. The suffix is exclusive:
  //    no rank consumes rank 0's pair (dS0 comes from rank 0's own main pass),
  //    so rank 0 skips the pass over Q and dO and contributes zeros.
  const bool pair_consumed = r != 0;
  LocalInput in{&p, "", false, p.d_final_state != nullptr};
  StateBuffer x;
  try {
    check_memory_space(comm, p);
    kernels::validate(p);
    x = StateBuffer(p.device, state_count(p), p.stream);
    if (pair_consumed) {
      kernels::local_state(state_params(p, kernels::StateKind::kBackward, p.q, p.q_stride, p.d_o,
                                        p.do_stride, x.data()));
    } else {
      fill_zero(p.device, x.data(), state_count(p), p.stream);
    }
  } catch (const Error& e) {
    in.error = e.what();
  }
  const ScanSpec spec = make_spec(p, agree_on_shapes(comm, in, "backward"), /*reverse=*/true);
  const size_t count = state_count(p);

  // Fold the global G into the last rank's pair: X_{P-1} = a_{P-1}·G + C_{P-1}.
  if (last && p.d_final_state && pair_consumed)
    axpy_decay(p.device, x.data(), p.d_final_state, p.decay, p.batch, p.heads, spec.per_head,
               p.seqlen, p.stream);

  // 2. dS_out(r) = exclusive suffix (right to left).
  Report rep;
  rep.schedule = choose_schedule(options.schedule, P, count * sizeof(float), options.link);
  rep.message_bytes = count * sizeof(float);
  StateBuffer ds_out(p.device, count, p.stream);
  const auto t0 = Clock::now();
  record_event(p.device, options.exchange_begin_event, p.stream);
  rep.messages = exclusive_scan(comm, rep.schedule, spec, x.data(), ds_out.data());
  record_event(p.device, options.exchange_end_event, p.stream);
  rep.exchange_ms = ms_since(t0);

  // 3. The main local backward from S_in(r) and dS_out(r); d_initial_state is
  //    dS_in(r) = a_r·dS_out(r) + C_r, the global dS0 on rank 0.
  kernels::BackwardParams bp = p;
  bp.d_final_state = last ? p.d_final_state : ds_out.data();
  kernels::backward(bp);
  return rep;
}

}  // namespace lightring::parallel
