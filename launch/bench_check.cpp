// --check of lightring-bench: unsharded CPU reference on rank 0 vs every shard.
#include "launch/bench_check.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "launch/bench_docs.h"
#include "launch/bench_fill.h"

namespace lightring::launch {

namespace {

enum TensorId { kQ, kK, kV, kDO, kS0, kG };

uint64_t tensor_seed(const BenchOptions& opt, int rank, TensorId t) {
  return opt.seed * 1000003ull + static_cast<uint64_t>(rank) * 16 + t;
}

struct Inputs {
  std::vector<uint8_t> q, k, v, d_o;
};

Inputs shard_inputs(const BenchOptions& opt, int rank, int64_t n) {
  const size_t bhn = static_cast<size_t>(opt.batch * opt.heads * n);
  return {bench_bytes(bhn * opt.dim, opt.dtype, tensor_seed(opt, rank, kQ)),
          bench_bytes(bhn * opt.dim, opt.dtype, tensor_seed(opt, rank, kK)),
          bench_bytes(bhn * opt.vdim, opt.dtype, tensor_seed(opt, rank, kV)),
          bench_bytes(bhn * opt.vdim, opt.dtype, tensor_seed(opt, rank, kDO))};
}

std::vector<float> global_state(const BenchOptions& opt, TensorId which) {
  const size_t count = static_cast<size_t>(opt.batch * opt.heads * opt.dim * opt.vdim);
  return bytes_to_float(bench_bytes(count, kernels::DType::kFloat32, tensor_seed(opt, 0, which)),
                        kernels::DType::kFloat32);
}

std::vector<float> decay_rates(const BenchOptions& opt) {
  std::vector<float> d(opt.heads);
  kernels::slopes(opt.heads, d.data());
  return d;
}

// Copies a [B,H,n,dim] shard into rows [t0, t0+n) of a [B,H,N,dim] tensor, or back.
void place_rows(const float* shard, float* global, int64_t BH, int64_t n, int64_t N, int64_t dim,
                int64_t t0) {
  for (int64_t bh = 0; bh < BH; ++bh)
    std::copy(shard + bh * n * dim, shard + (bh + 1) * n * dim, global + (bh * N + t0) * dim);
}
std::vector<float> take_rows(const std::vector<float>& global, int64_t BH, int64_t n, int64_t N,
                             int64_t dim, int64_t t0) {
  std::vector<float> out(BH * n * dim);
  for (int64_t bh = 0; bh < BH; ++bh)
    std::copy(global.begin() + (bh * N + t0) * dim, global.begin() + (bh * N + t0 + n) * dim,
              out.begin() + bh * n * dim);
  return out;
}

// Global sums of one compared tensor.
struct ErrAcc {
  double num = 0, den = 0;
  int64_t wrong = 0;
  void add(const std::vector<float>& x, const std::vector<float>& ref, double rms, double tol) {
    for (size_t i = 0; i < x.size(); ++i) {
      const double d = static_cast<double>(x[i]) - ref[i];
      num += d * d;
      den += static_cast<double>(ref[i]) * ref[i];
      if (!(std::fabs(d) <= tol * (std::fabs(ref[i]) + rms))) ++wrong;  // NaN counts as wrong
    }
  }
  double rel() const { return std::sqrt(num) / std::max(std::sqrt(den), 1e-30); }
};

// Bounds of --check against the fp32 CPU reference. `rel` bounds ‖x − ref‖/‖ref‖
// of every tensor; an element is wrong when |x − ref| > elem·(|ref| + rms(ref)).
// The CPU backend only rounds the stored outputs to the dtype (states stay fp32).
// The CUDA backend also rounds the tensor-core operands, as FLA does: P and the
// decayed K / Q tiles and the state to bf16/fp16, fp32 inputs to TF32, so its
// bounds are those of the GPU kernel tests (tests/cpp/cuda, cuda_tolerance) and
// its fp32 states carry operand rounding of the element type.
struct Tolerance {
  double rel, elem, state_elem;
};

Tolerance check_tolerance(kernels::Device backend, kernels::DType dt) {
  using kernels::DType;
  if (backend == kernels::Device::kCuda) {
    switch (dt) {
      case DType::kFloat32:
        return {2e-3, 1e-2, 1e-2};
      case DType::kFloat16:
        return {5e-3, 2e-2, 2e-2};
      case DType::kBFloat16:
        return {2e-2, 5e-2, 5e-2};
    }
  }
  switch (dt) {
    case DType::kFloat32:
      return {1e-4, 1e-3, 1e-3};
    case DType::kFloat16:
      return {5e-3, 1e-2, 1e-3};
    case DType::kBFloat16:
      return {2e-2, 5e-2, 1e-3};
  }
  return {0, 0, 0};
}

double rms_of(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) s += static_cast<double>(v) * v;
  return x.empty() ? 0.0 : std::sqrt(s / x.size());
}

}  // namespace

void fill_shard_inputs(const BenchOptions& opt, int rank, int world_size, Shard& shard) {
  if (shard.device == kernels::Device::kCuda) {
    // The same values generated on the device: no host copy of the shard.
    const size_t bhn = static_cast<size_t>(opt.batch * opt.heads * shard.s.seqlen);
    fill_device(shard.q.data(), bhn * opt.dim, opt.dtype, tensor_seed(opt, rank, kQ), nullptr);
    fill_device(shard.k.data(), bhn * opt.dim, opt.dtype, tensor_seed(opt, rank, kK), nullptr);
    fill_device(shard.v.data(), bhn * opt.vdim, opt.dtype, tensor_seed(opt, rank, kV), nullptr);
    fill_device(shard.d_o.data(), bhn * opt.vdim, opt.dtype, tensor_seed(opt, rank, kDO), nullptr);
    device_synchronize(shard.device);  // the compute stream does not order after the legacy one
  } else {
    const Inputs in = shard_inputs(opt, rank, shard.s.seqlen);
    shard.q.upload(in.q.data(), in.q.size());
    shard.k.upload(in.k.data(), in.k.size());
    shard.v.upload(in.v.data(), in.v.size());
    shard.d_o.upload(in.d_o.data(), in.d_o.size());
  }
  const std::vector<float> decay = decay_rates(opt);
  shard.decay.upload(decay.data(), decay.size() * sizeof(float));
  shard.use_decay = opt.decay;
  shard.use_s0 = opt.states && rank == 0;
  shard.use_g = opt.states && rank == world_size - 1;
  if (shard.use_s0) shard.s0.upload(global_state(opt, kS0).data(), shard.state_bytes());
  if (shard.use_g) shard.g.upload(global_state(opt, kG).data(), shard.state_bytes());
}

CheckResult check_against_unsharded(comm::MpiCommunicator& world, const BenchOptions& opt,
                                    const std::vector<int64_t>& lengths,
                                    const std::vector<int64_t>& cu, Shard& shard) {
  const int rank = world.rank(), P = world.size();
  auto send_bytes = [&](const void* p, size_t n, int to) { world.send_bytes(p, n, to); };
  auto recv_bytes = [&](size_t n, int from) {
    std::vector<uint8_t> b(n);
    world.recv_bytes(b.data(), n, from);
    return b;
  };
  const kernels::DType dt = opt.dtype;
  const std::vector<uint8_t> outs[4] = {shard.o.download(), shard.dq.download(),
                                        shard.dk.download(), shard.dv.download()};
  if (rank != 0) {
    for (const auto& b : outs) send_bytes(b.data(), b.size(), 0);
    if (rank == P - 1) {
      const auto fs = shard.final_state.download();
      send_bytes(fs.data(), fs.size(), 0);
    }
    if (shard.use_doc_states) {
      for (const Buffer* b : {&shard.doc_final, &shard.d_doc_s0}) {
        const auto bytes = b->download();
        send_bytes(bytes.data(), bytes.size(), 0);
      }
    }
  }
  double result[3] = {0, 0, 1};  // rel_err, num_wrong, pass
  if (rank == 0) {
    const int64_t B = opt.batch, H = opt.heads, D = opt.dim, E = opt.vdim, BH = B * H;
    int64_t N = 0;
    for (int64_t n : lengths) N += n;
    std::vector<float> q(BH * N * D), k(BH * N * D), v(BH * N * E), d_o(BH * N * E);
    int64_t t0 = 0;
    for (int r = 0; r < P; ++r) {
      const Inputs in = shard_inputs(opt, r, lengths[r]);
      place_rows(bytes_to_float(in.q, dt).data(), q.data(), BH, lengths[r], N, D, t0);
      place_rows(bytes_to_float(in.k, dt).data(), k.data(), BH, lengths[r], N, D, t0);
      place_rows(bytes_to_float(in.v, dt).data(), v.data(), BH, lengths[r], N, E, t0);
      place_rows(bytes_to_float(in.d_o, dt).data(), d_o.data(), BH, lengths[r], N, E, t0);
      t0 += lengths[r];
    }
    // The unsharded reference: CPU backend, fp32, the whole sequence.
    const std::vector<float> decay = decay_rates(opt), s0 = global_state(opt, kS0),
                             g = global_state(opt, kG);
    std::vector<float> o(v.size()), dq(q.size()), dk(k.size()), dv(v.size());
    std::vector<float> fs(BH * D * E), ds0(BH * D * E);
    // --docs: the whole packed stream; with --states every document's states.
    const int64_t num_docs = static_cast<int64_t>(cu.size()) - 1, per = BH * D * E;
    const bool docs = opt.docs.enabled(), doc_states = docs && opt.states;
    const kernels::LocalDocuments whole =
        docs ? kernels::local_documents(cu.data(), num_docs, 0, N) : kernels::LocalDocuments{};
    const std::vector<float> doc_s0 = doc_states ? document_states(opt, 0, 0, num_docs)
                                                 : std::vector<float>{},
                             doc_g = doc_states ? document_states(opt, 1, 0, num_docs)
                                                : std::vector<float>{};
    std::vector<float> doc_fs(doc_states ? num_docs * per : 0),
        doc_ds0(doc_states ? num_docs * per : 0);
    kernels::ForwardParams fp;
    fp.batch = B;
    fp.heads = H;
    fp.seqlen = N;
    fp.qk_dim = D;
    fp.v_dim = E;
    fp.decay = opt.decay ? decay.data() : nullptr;
    fp.q = q.data();
    fp.k = k.data();
    fp.v = v.data();
    fp.o = o.data();
    fp.q_stride = fp.k_stride = kernels::contiguous_bhnd(H, N, D);
    fp.v_stride = fp.o_stride = kernels::contiguous_bhnd(H, N, E);
    fp.initial_state = opt.states && !docs ? s0.data() : nullptr;
    fp.final_state = fs.data();
    if (docs) {
      fp.docs = whole.view();
      fp.doc_initial_states = doc_states ? doc_s0.data() : nullptr;
      fp.doc_final_states = doc_states ? doc_fs.data() : nullptr;
    }
    kernels::forward(fp);
    kernels::BackwardParams bp =
        kernels::backward_params(fp, d_o.data(), dq.data(), dk.data(), dv.data());
    bp.d_final_state = opt.states && !docs ? g.data() : nullptr;
    bp.d_initial_state = ds0.data();
    if (docs) {
      bp.d_doc_final_states = doc_states ? doc_g.data() : nullptr;
      bp.d_doc_initial_states = doc_states ? doc_ds0.data() : nullptr;
    }
    kernels::backward(bp);

    const Tolerance tol = check_tolerance(opt.backend, dt);
    const std::vector<float>* refs[4] = {&o, &dq, &dk, &dv};
    const int64_t dims[4] = {E, D, D, E};
    ErrAcc acc[8];
    t0 = 0;
    std::vector<uint8_t> fs_got;
    const double rms_doc_fs = rms_doc_fs, rms_doc_ds0 = rms_of(doc_ds0);
    for (int r = 0; r < P; ++r) {
      for (int t = 0; t < 4; ++t) {
        const size_t bytes = BH * lengths[r] * dims[t] * kernels::dtype_size(dt);
        const std::vector<uint8_t> got = r == 0 ? outs[t] : recv_bytes(bytes, r);
        acc[t].add(bytes_to_float(got, dt), take_rows(*refs[t], BH, lengths[r], N, dims[t], t0),
                   rms_of(*refs[t]), tol.elem);
      }
      if (r == P - 1)
        fs_got = r == 0 ? shard.final_state.download() : recv_bytes(fs.size() * sizeof(float), r);
      if (doc_states) {
        // A document's final state from the rank where it ends, its dS0 where it starts.
        const kernels::LocalDocuments ld =
            kernels::local_documents(cu.data(), num_docs, t0, lengths[r]);
        const kernels::Documents d = ld.view();
        const size_t bytes = static_cast<size_t>(d.count * per) * sizeof(float);
        const std::vector<float> got_fs = bytes_to_float(
            r == 0 ? shard.doc_final.download() : recv_bytes(bytes, r), kernels::DType::kFloat32);
        const std::vector<float> got_ds0 = bytes_to_float(
            r == 0 ? shard.d_doc_s0.download() : recv_bytes(bytes, r), kernels::DType::kFloat32);
        auto entry = [&](const std::vector<float>& x, int64_t i) {
          return std::vector<float>(x.begin() + i * per, x.begin() + (i + 1) * per);
        };
        for (int64_t i = 0; i < d.count; ++i) {
          if (d.ends_document(i))
            acc[6].add(entry(got_fs, i), entry(doc_fs, ld.first + i), rms_of(doc_fs),
                       tol.state_elem);
          if (d.starts_document(i))
            acc[7].add(entry(got_ds0, i), entry(doc_ds0, ld.first + i), rms_doc_ds0,
                       tol.state_elem);
        }
      }
      t0 += lengths[r];
    }
    acc[4].add(bytes_to_float(fs_got, kernels::DType::kFloat32), fs, rms_of(fs), tol.state_elem);
    acc[5].add(bytes_to_float(shard.ds0.download(), kernels::DType::kFloat32), ds0, rms_of(ds0),
               tol.state_elem);
    for (const ErrAcc& a : acc) {
      result[0] = std::max(result[0], a.rel());
      result[1] += static_cast<double>(a.wrong);
    }
    result[2] = (result[0] <= tol.rel && result[1] == 0) ? 1 : 0;
  }
  world.broadcast_bytes(result, sizeof result, 0);
  return {result[0], static_cast<int64_t>(result[1]), result[2] != 0};
}

}  // namespace lightring::launch
