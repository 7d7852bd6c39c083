// Packed documents on the CUDA backend (kernels/documents.h) against the per-document float64
// oracle (testing/documents_oracle.h), on each path: the boundaries inside the wgmma scans
// (chunk tables, kernels/cuda/doc_chunks.h), and piece by piece (kernels/documents.cpp) on the
// wgmma, mma and tf32 families. The stream cut into shards chained
// through the two-phase passes in device memory as the sequence-parallel runtime chains them, and
// the one-shot forward / backward of the whole stream (the fused scans). Every output,
// per-document final state and gradient, and the pair identities of common/run_documents.h.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>

#include "common/run_documents.h"
#include "cuda_runner.h"

namespace lightring::test {
namespace {

using Family = kernels::KernelTuning::Family;

// Which path runs the documents (KernelTuning::documents_path, family):
//   kAuto    the defaults: inside the wgmma scans for 16-bit inputs on sm_90a, pieces for fp32;
//   kMma     pieces on the mma family (16-bit);
//   kPieces  pieces on the automatic family.
enum class Path { kAuto, kMma, kPieces };

const char* path_name(Path p) {
  return p == Path::kAuto ? "auto" : p == Path::kMma ? "mma" : "pieces";
}

kernels::KernelTuning path_tuning(Path p, int64_t segment_len = 0) {
  using Where = kernels::KernelTuning::DocumentsPath;
  kernels::KernelTuning t = kernels::kernel_tuning();
  t.family = p == Path::kMma ? Family::kMma : Family::kAuto;
  t.documents_path = p == Path::kPieces ? Where::kPieces : Where::kAuto;
  t.segment_len = segment_len;
  return t;
}

struct CudaDocsCase {
  std::string name;
  std::vector<int64_t> lengths;  // document lengths
  std::vector<int64_t> shards;   // shard lengths (sum = T)
  int64_t D = 64, E = 64;
};

std::vector<float> download_floats(const DeviceBuffer& b, size_t n) {
  std::vector<float> h(n);
  b.download(h.data());
  return h;
}

std::vector<float> device_floats(const float* p, size_t n) {
  std::vector<float> h(n);
  if (cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess)
    throw std::runtime_error("cudaMemcpy D2H failed");
  return h;
}

// Runs the stream shard by shard through ForwardPass / BackwardPass on the GPU.
DocsRun run_cuda_documents(const CudaDocsCase& c, const Problem& pr, const std::vector<int64_t>& cu,
                           const std::vector<float>& s0, const std::vector<float>& g) {
  const Shape& s = pr.shape;
  const int64_t docs = static_cast<int64_t>(cu.size()) - 1, per = s.H * s.D * s.E;
  const int P = static_cast<int>(c.shards.size());
  const size_t es = kernels::dtype_size(pr.dtype);
  const size_t nd = s.H * s.N * s.D, ne = s.H * s.N * s.E;
  DeviceBuffer q(pr.q.data(), nd * es), k(pr.k.data(), nd * es), v(pr.v.data(), ne * es),
      dout(pr.dout.data(), ne * es), decay(pr.decay_f.data(), s.H * sizeof(float));
  const HostTensor pe = poisoned(pr.dtype, ne), pd = poisoned(pr.dtype, nd);
  DeviceBuffer o(pe.data(), ne * es), dq(pd.data(), nd * es), dk(pd.data(), nd * es),
      dv(pe.data(), ne * es);
  const std::vector<float> nan_states(docs * per, std::nanf("")), zero(per, 0.0f);
  DeviceBuffer finals(nan_states.data(), docs * per * 4), d_init(nan_states.data(), docs * per * 4);
  DeviceBuffer d_s0, d_g;
  if (!s0.empty()) d_s0 = DeviceBuffer(s0.data(), docs * per * 4);
  if (!g.empty()) d_g = DeviceBuffer(g.data(), docs * per * 4);
  std::vector<DeviceBuffer> chain;  // S_in(r) for r = 0..P (S_in(P) = S_out of the last)
  for (int r = 0; r <= P; ++r) chain.emplace_back(zero.data(), per * 4);
  DeviceBuffer grad(zero.data(), per * 4), grad_in(zero.data(), per * 4);

  std::vector<kernels::LocalDocuments> local(P);
  std::vector<int64_t> start(P, 0);
  for (int r = 1; r < P; ++r) start[r] = start[r - 1] + c.shards[r - 1];
  const kernels::Strides qs = kernels::contiguous_bhnd(s.H, s.N, s.D),
                         vs = kernels::contiguous_bhnd(s.H, s.N, s.E);
  auto row = [&](const DeviceBuffer& b, int64_t t, int64_t dim) {
    return static_cast<char*>(b.get()) + t * dim * es;
  };
  auto states = [&](const DeviceBuffer& b, int64_t first) {
    return b.get() ? b.f() + first * per : nullptr;
  };
  auto problem = [&](int r, kernels::ForwardParams* f) {
    f->device = kernels::Device::kCuda;
    f->dtype = pr.dtype;
    f->batch = 1;
    f->heads = s.H;
    f->seqlen = c.shards[r];
    f->qk_dim = s.D;
    f->v_dim = s.E;
    f->decay = decay.f();
    f->scale = static_cast<float>(pr.scale);
    f->docs = local[r].view();
    f->q = row(q, start[r], s.D);
    f->k = row(k, start[r], s.D);
    f->v = row(v, start[r], s.E);
    f->q_stride = f->k_stride = qs;
    f->v_stride = f->o_stride = vs;
    f->doc_initial_states = states(d_s0, local[r].first);
  };
  DocsRun run;
  for (int r = 0; r < P; ++r) {
    local[r] = kernels::local_documents(cu.data(), docs, start[r], c.shards[r]);
    kernels::ForwardParams f;
    problem(r, &f);
    f.o = row(o, start[r], s.E);
    f.doc_final_states = states(finals, local[r].first);
    kernels::ForwardPass pass(f);
    const std::vector<double> pair = to_double(device_floats(pass.local_state(), per));
    pass.finish(chain[r].f(), chain[r + 1].f());
    const std::vector<double> want = axpy_heads(
        to_double(download_floats(chain[r], per)), pair,
        pair_scalars(pr.decay, s.H, c.shards[r], kernels::forward_reset(f.docs)), s.D * s.E);
    run.pair_err =
        std::max(run.pair_err, rel_err(to_double(download_floats(chain[r + 1], per)), want));
  }
  for (int r = P - 1; r >= 0; --r) {
    kernels::ForwardParams f;
    problem(r, &f);
    kernels::BackwardParams b =
        kernels::backward_params(f, row(dout, start[r], s.E), row(dq, start[r], s.D),
                                 row(dk, start[r], s.D), row(dv, start[r], s.E));
    b.initial_state = chain[r].f();
    b.d_doc_final_states = states(d_g, local[r].first);
    // No document initial states: nothing to differentiate (short pieces may then run padded).
    b.d_doc_initial_states = s0.empty() ? nullptr : states(d_init, local[r].first);
    kernels::BackwardPass pass(b);
    const std::vector<double> pair = to_double(device_floats(pass.local_state(), per));
    pass.finish(grad.f(), grad_in.f());
    const std::vector<double> want = axpy_heads(
        to_double(download_floats(grad, per)), pair,
        pair_scalars(pr.decay, s.H, c.shards[r], kernels::backward_reset(b.docs)), s.D * s.E);
    run.pair_err = std::max(run.pair_err, rel_err(to_double(download_floats(grad_in, per)), want));
    std::swap(grad, grad_in);
  }
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("CUDA kernels failed");
  HostTensor ho(pr.dtype, ne), hdq(pr.dtype, nd), hdk(pr.dtype, nd), hdv(pr.dtype, ne);
  o.download(ho.data());
  dq.download(hdq.data());
  dk.download(hdk.data());
  dv.download(hdv.data());
  run.o = ho.to_double();
  run.dq = hdq.to_double();
  run.dk = hdk.to_double();
  run.dv = hdv.to_double();
  run.final_states = to_double(download_floats(finals, docs * per));
  run.d_initial_states = to_double(download_floats(d_init, docs * per));
  return run;
}

// The whole stream through the one-shot kernels::forward / kernels::backward (one shard).
DocsRun run_cuda_one_shot(const Problem& pr, const std::vector<int64_t>& cu,
                          const std::vector<float>& s0, const std::vector<float>& g) {
  const Shape& s = pr.shape;
  const int64_t docs = static_cast<int64_t>(cu.size()) - 1, per = s.H * s.D * s.E;
  const size_t es = kernels::dtype_size(pr.dtype);
  const size_t nd = s.H * s.N * s.D, ne = s.H * s.N * s.E;
  DeviceBuffer q(pr.q.data(), nd * es), k(pr.k.data(), nd * es), v(pr.v.data(), ne * es),
      dout(pr.dout.data(), ne * es), decay(pr.decay_f.data(), s.H * sizeof(float));
  const HostTensor pe = poisoned(pr.dtype, ne), pd = poisoned(pr.dtype, nd);
  DeviceBuffer o(pe.data(), ne * es), dq(pd.data(), nd * es), dk(pd.data(), nd * es),
      dv(pe.data(), ne * es);
  const std::vector<float> nan_states(docs * per, std::nanf(""));
  DeviceBuffer finals(nan_states.data(), docs * per * 4), d_init(nan_states.data(), docs * per * 4);
  DeviceBuffer d_s0, d_g;
  if (!s0.empty()) d_s0 = DeviceBuffer(s0.data(), docs * per * 4);
  if (!g.empty()) d_g = DeviceBuffer(g.data(), docs * per * 4);
  const kernels::LocalDocuments local = kernels::local_documents(cu.data(), docs, 0, s.N);
  kernels::ForwardParams f;
  f.device = kernels::Device::kCuda;
  f.dtype = pr.dtype;
  f.batch = 1;
  f.heads = s.H;
  f.seqlen = s.N;
  f.qk_dim = s.D;
  f.v_dim = s.E;
  f.decay = decay.f();
  f.scale = static_cast<float>(pr.scale);
  f.docs = local.view();
  f.q = q.get();
  f.k = k.get();
  f.v = v.get();
  f.o = o.get();
  f.q_stride = f.k_stride = kernels::contiguous_bhnd(s.H, s.N, s.D);
  f.v_stride = f.o_stride = kernels::contiguous_bhnd(s.H, s.N, s.E);
  f.doc_initial_states = d_s0.get() ? d_s0.f() : nullptr;
  f.doc_final_states = finals.f();
  kernels::forward(f);
  kernels::BackwardParams b = kernels::backward_params(f, dout.get(), dq.get(), dk.get(), dv.get());
  b.d_doc_final_states = d_g.get() ? d_g.f() : nullptr;
  b.d_doc_initial_states = s0.empty() ? nullptr : d_init.f();
  kernels::backward(b);
  if (cudaDeviceSynchronize() != cudaSuccess) throw std::runtime_error("CUDA kernels failed");
  DocsRun run;
  HostTensor ho(pr.dtype, ne), hdq(pr.dtype, nd), hdk(pr.dtype, nd), hdv(pr.dtype, ne);
  o.download(ho.data());
  dq.download(hdq.data());
  dk.download(hdk.data());
  dv.download(hdv.data());
  run.o = ho.to_double();
  run.dq = hdq.to_double();
  run.dk = hdk.to_double();
  run.dv = hdv.to_double();
  run.final_states = to_double(download_floats(finals, docs * per));
  run.d_initial_states = to_double(download_floats(d_init, docs * per));
  return run;
}

class DocumentsCuda : public ::testing::TestWithParam<std::tuple<CudaDocsCase, DType, Path>> {};

void check_cuda_documents(const CudaDocsCase& c, DType dtype, Path path, bool with_s0,
                          bool one_shot = false, int64_t segment_len = 0) {
  if (dtype == DType::kFloat32 && path == Path::kMma)
    GTEST_SKIP() << "fp32 inputs run the tf32 family only";
  ScopedTuning use(path_tuning(path, segment_len));
  const std::vector<int64_t> cu = offsets_of(c.lengths);
  const int64_t T = cu.back(), docs = static_cast<int64_t>(c.lengths.size());
  ASSERT_EQ(T, std::accumulate(c.shards.begin(), c.shards.end(), int64_t{0}));
  const int64_t H = 2;
  const Shape s{1, H, T, c.D, c.E};
  const Problem pr = make_problem(s, dtype, /*decay_on=*/true, false, false, 29 + T);
  std::mt19937_64 rng(11 + docs);
  const int64_t per = H * c.D * c.E;
  std::vector<float> s0 = to_float(randn(docs * per, rng, 0.5));
  const std::vector<float> g = to_float(randn(docs * per, rng, 0.5));
  if (!with_s0) s0.clear();
  const DocsRun got =
      one_shot ? run_cuda_one_shot(pr, cu, s0, g) : run_cuda_documents(c, pr, cu, s0, g);
  const double tol = cuda_tolerance(dtype) * 2;
  expect_documents_close(got, pr, cu, s0, g, tol, tol, tol);
}

bool have_gpu() {
  int devices = 0;
  return cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
}

TEST_P(DocumentsCuda, MatchesPerDocumentOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no GPU";
  const auto& [c, dtype, path] = GetParam();
  check_cuda_documents(c, dtype, path, /*with_s0=*/true);
}

// The whole stream in one call: the fused forward and dQ scans where they run.
TEST_P(DocumentsCuda, OneShotMatchesPerDocumentOracle) {
  if (!have_gpu()) GTEST_SKIP() << "no GPU";
  const auto& [c, dtype, path] = GetParam();
  check_cuda_documents(c, dtype, path, /*with_s0=*/true, /*one_shot=*/true);
  check_cuda_documents(c, dtype, path, /*with_s0=*/false, /*one_shot=*/true);
}

// Without document initial states: short pieces run as front-padded batches (gather, one
// batched call per padded length, scatter) on side streams (kernels/documents_impl.h).
TEST_P(DocumentsCuda, NoStatesShortPiecesPadded) {
  if (!have_gpu()) GTEST_SKIP() << "no GPU";
  const auto& [c, dtype, path] = GetParam();
  check_cuda_documents(c, dtype, path, /*with_s0=*/false);
}

// Long segments (KernelTuning::segment_len) over long and short documents: the state phases
// stop at the decay window (slope 2^-4: 13 of the 32 chunks) and at a segment's last document
// start.
TEST(DocumentsCudaLong, DecayWindowAndResetsInLongSegments) {
  if (!have_gpu()) GTEST_SKIP() << "no GPU";
  // The oracle is quadratic in a document's length: documents of at most 2500 rows.
  const CudaDocsCase c{"long", {1500, 3, 64, 1, 2500, 61, 190, 1200}, {5519}, 64, 64};
  for (DType dtype : {DType::kBFloat16, DType::kFloat16})
    for (bool one_shot : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + (one_shot ? " one-shot" : " passes"));
      check_cuda_documents(c, dtype, Path::kAuto, /*with_s0=*/true, one_shot, 2048);
    }
}

std::vector<CudaDocsCase> cuda_cases() {
  return {
      {"one_token_documents", {1, 1, 1, 1, 1, 1, 1}, {7}},
      {"block_edges", {64, 65, 1, 63, 128}, {321}},
      {"equal_lengths_batched", {96, 96, 96, 96, 5}, {389}},
      {"spans_three_shards_of_four", {10, 700, 7, 300}, {150, 280, 290, 297}},
      {"boundary_on_every_edge", {130, 200, 77}, {130, 200, 77}},
      {"one_token_shards", {3, 1, 4}, {1, 1, 1, 1, 1, 1, 1, 1}},
      {"wide_heads", {100, 1000, 33}, {500, 633}, 128, 128},
      {"odd_dims", {45, 300, 2}, {347}, 48, 80},
      {"wide_dims", {300, 3, 500}, {400, 403}, 256, 64},
      {"many_segments", {300, 1, 1, 700, 130, 63, 900}, {2096}},
      {"many_short_mixed",
       {5, 70, 3, 64, 65, 1, 1, 9, 130, 2, 33, 33, 7, 256, 255, 200},
       {500, 634}},
  };
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DocumentsCuda,
    ::testing::Combine(::testing::ValuesIn(cuda_cases()),
                       ::testing::Values(DType::kFloat32, DType::kBFloat16, DType::kFloat16),
                       ::testing::Values(Path::kAuto, Path::kMma, Path::kPieces)),
    [](const auto& info) {
      return std::get<0>(info.param).name + "_" + dtype_name(std::get<1>(info.param)) + "_" +
             path_name(std::get<2>(info.param));
    });

}  // namespace
}  // namespace lightring::test
