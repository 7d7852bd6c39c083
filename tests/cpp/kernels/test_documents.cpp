// Packed documents on the CPU backend (kernels/documents.h) against the per-document float64
// oracle (testing/documents_oracle.h): the stream cut into shards and chained through the
// two-phase passes (common/run_documents.h), every output, per-document final state and
// gradient, and the pair identities the exchange relies on. Plus local_documents and the
// argument checks.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "common/expect_error.h"
#include "common/run_cpu.h"
#include "common/run_documents.h"

namespace lightring::test {
namespace {

struct DocsCase {
  std::string name;
  std::vector<int64_t> lengths;  // document lengths
  std::vector<int64_t> shards;   // shard lengths (sum = T)
  int64_t H = 2, D = 8, E = 12;
  bool with_s0 = true, with_g = true;
  int block = 16;
};

// Runs the case on the CPU backend, shard by shard; returns what the oracle is compared with.
DocsRun run_cpu_documents(const DocsCase& c, const Problem& pr, const std::vector<int64_t>& cu,
                          const std::vector<float>& s0, const std::vector<float>& g) {
  const Shape& s = pr.shape;
  const int64_t docs = static_cast<int64_t>(cu.size()) - 1, per = s.H * s.D * s.E;
  const int P = static_cast<int>(c.shards.size());
  HostTensor o(pr.dtype, pr.v.numel()), dq(pr.dtype, pr.q.numel()), dk(pr.dtype, pr.k.numel()),
      dv(pr.dtype, pr.v.numel());
  o.poison();
  dq.poison();
  dk.poison();
  dv.poison();
  std::vector<float> finals(docs * per, std::nanf("")), d_init(docs * per, std::nanf(""));
  std::vector<std::vector<float>> s_in(P + 1, std::vector<float>(per, 0.0f));
  std::vector<kernels::LocalDocuments> local(P);
  std::vector<int64_t> start(P, 0);
  for (int r = 1; r < P; ++r) start[r] = start[r - 1] + c.shards[r - 1];
  DocsRun run;

  const kernels::Strides qs = kernels::contiguous_bhnd(s.H, s.N, s.D),
                         vs = kernels::contiguous_bhnd(s.H, s.N, s.E);
  auto at = [&](const void* base, int64_t row, int64_t dim) {
    return static_cast<const char*>(base) + row * dim * dtype_size(pr.dtype);
  };
  auto at_mut = [&](void* base, int64_t row, int64_t dim) {
    return const_cast<char*>(at(base, row, dim));
  };
  for (int r = 0; r < P; ++r) {
    local[r] = kernels::local_documents(cu.data(), docs, start[r], c.shards[r]);
    kernels::ForwardParams f;
    fill_problem(pr, c.block, &f);
    f.seqlen = c.shards[r];
    f.docs = local[r].view();
    f.q = at(pr.q.data(), start[r], s.D);
    f.k = at(pr.k.data(), start[r], s.D);
    f.v = at(pr.v.data(), start[r], s.E);
    f.o = at_mut(o.data(), start[r], s.E);
    f.q_stride = f.k_stride = qs;
    f.v_stride = f.o_stride = vs;
    f.doc_initial_states = s0.empty() ? nullptr : s0.data() + local[r].first * per;
    f.doc_final_states = finals.data() + local[r].first * per;
    kernels::ForwardPass pass(f);
    const float* a = pass.local_state();
    const std::vector<double> pair = to_double(std::vector<float>(a, a + per));
    pass.finish(s_in[r].data(), s_in[r + 1].data());
    const std::vector<double> want = axpy_heads(
        to_double(s_in[r]), pair,
        pair_scalars(pr.decay, s.H, c.shards[r], kernels::forward_reset(f.docs)), s.D * s.E);
    run.pair_err = std::max(run.pair_err, rel_err(to_double(s_in[r + 1]), want));
  }

  std::vector<float> grad(per, 0.0f), grad_in(per, 0.0f);
  for (int r = P - 1; r >= 0; --r) {
    kernels::ForwardParams f;
    fill_problem(pr, c.block, &f);
    f.seqlen = c.shards[r];
    f.docs = local[r].view();
    f.q = at(pr.q.data(), start[r], s.D);
    f.k = at(pr.k.data(), start[r], s.D);
    f.v = at(pr.v.data(), start[r], s.E);
    f.q_stride = f.k_stride = qs;
    f.v_stride = f.o_stride = vs;
    f.doc_initial_states = s0.empty() ? nullptr : s0.data() + local[r].first * per;
    kernels::BackwardParams b = kernels::backward_params(
        f, at(pr.dout.data(), start[r], s.E), at_mut(dq.data(), start[r], s.D),
        at_mut(dk.data(), start[r], s.D), at_mut(dv.data(), start[r], s.E));
    b.initial_state = s_in[r].data();
    b.d_doc_final_states = g.empty() ? nullptr : g.data() + local[r].first * per;
    // Without document initial states there is no gradient to ask for (and short pieces may
    // then run padded: kernels/documents_impl.h).
    b.d_doc_initial_states = s0.empty() ? nullptr : d_init.data() + local[r].first * per;
    kernels::BackwardPass pass(b);
    const float* cp = pass.local_state();
    const std::vector<double> pair = to_double(std::vector<float>(cp, cp + per));
    pass.finish(grad.data(), grad_in.data());
    const std::vector<double> want = axpy_heads(
        to_double(grad), pair,
        pair_scalars(pr.decay, s.H, c.shards[r], kernels::backward_reset(b.docs)), s.D * s.E);
    run.pair_err = std::max(run.pair_err, rel_err(to_double(grad_in), want));
    grad = grad_in;
  }
  run.o = o.to_double();
  run.final_states = to_double(finals);
  run.dq = dq.to_double();
  run.dk = dk.to_double();
  run.dv = dv.to_double();
  run.d_initial_states = to_double(d_init);
  return run;
}

void check_documents(const DocsCase& c, DType dtype) {
  const std::vector<int64_t> cu = offsets_of(c.lengths);
  const int64_t T = cu.back(), docs = static_cast<int64_t>(c.lengths.size());
  ASSERT_EQ(T, std::accumulate(c.shards.begin(), c.shards.end(), int64_t{0}));
  const Shape s{1, c.H, T, c.D, c.E};
  const Problem pr = make_problem(s, dtype, /*decay_on=*/true, false, false, 17 + T);
  std::mt19937_64 rng(5 + docs);
  const int64_t per = c.H * c.D * c.E;
  std::vector<float> s0, g;
  if (c.with_s0) s0 = to_float(randn(docs * per, rng, 0.5));
  if (c.with_g) g = to_float(randn(docs * per, rng, 0.5));

  const DocsRun got = run_cpu_documents(c, pr, cu, s0, g);
  expect_documents_close(got, pr, cu, s0, g, tolerance(dtype) * 2, 2e-5, 1e-5);
}

// Runs documents piece by piece (KernelTuning::documents_path; the default is the block loop)
// with KernelTuning::pad_short_documents = mode, for one scope.
class ScopedPieces {
 public:
  explicit ScopedPieces(kernels::KernelTuning::PadShort mode) : saved_(kernels::kernel_tuning()) {
    kernels::KernelTuning t = saved_;
    t.documents_path = kernels::KernelTuning::DocumentsPath::kPieces;
    t.pad_short_documents = mode;
    kernels::set_kernel_tuning(t);
  }
  ~ScopedPieces() { kernels::set_kernel_tuning(saved_); }
  ScopedPieces(const ScopedPieces&) = delete;
  ScopedPieces& operator=(const ScopedPieces&) = delete;

 private:
  kernels::KernelTuning saved_;
};

class DocumentsCpu : public ::testing::TestWithParam<std::tuple<DocsCase, DType>> {};

// The default: the documents inside the CPU block loop (blocks cut at the boundaries).
TEST_P(DocumentsCpu, MatchesPerDocumentOracle) {
  const auto& [c, dtype] = GetParam();
  check_documents(c, dtype);
}

// Piece by piece (kernels/documents.cpp): every piece, or run of equal-length pieces, through
// the plain entry points.
TEST_P(DocumentsCpu, PiecesMatchOracle) {
  const auto& [c, dtype] = GetParam();
  ScopedPieces pieces(kernels::KernelTuning::PadShort::kOff);
  check_documents(c, dtype);
}

// Short pieces as front-padded batches (kernels/documents_impl.h), forced on the CPU: the
// same oracle, without document initial states (the padded path needs them zero).
TEST_P(DocumentsCpu, PaddedShortPiecesMatchOracle) {
  auto [c, dtype] = GetParam();
  c.with_s0 = false;
  ScopedPieces pad(kernels::KernelTuning::PadShort::kOn);
  check_documents(c, dtype);
}

std::vector<DocsCase> cases() {
  std::vector<DocsCase> v;
  v.push_back({"one_token_documents", {1, 1, 1, 1, 1}, {5}});
  v.push_back({"block_edges", {16, 17, 1, 15, 32}, {81}});
  v.push_back({"equal_lengths_batched", {16, 16, 16, 16, 7, 7}, {78}});
  v.push_back({"spans_shard_edges", {50, 200, 30}, {100, 100, 80}});
  v.push_back({"boundary_on_every_edge", {40, 60, 25}, {40, 60, 25}});
  v.push_back({"spans_three_shards_of_four", {10, 300, 7}, {50, 80, 90, 97}});
  v.push_back({"one_document_all_shards", {200}, {50, 50, 100}});
  v.push_back({"one_token_shards", {3, 1, 4}, {1, 1, 1, 1, 1, 1, 1, 1}});
  v.push_back(
      {"many_short_mixed", {5, 70, 3, 64, 65, 1, 1, 9, 130, 2, 33, 33, 7}, {120, 140, 163}});
  DocsCase none{"no_states", {33, 1, 70}, {20, 60, 24}};
  none.with_s0 = none.with_g = false;
  v.push_back(none);
  DocsCase wide{"default_block_wide_heads", {65, 64, 1, 130}, {100, 160}, 2, 32, 24};
  wide.block = 0;
  v.push_back(wide);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Cases, DocumentsCpu,
                         ::testing::Combine(::testing::ValuesIn(cases()),
                                            ::testing::Values(DType::kFloat32, DType::kBFloat16,
                                                              DType::kFloat16)),
                         [](const auto& info) {
                           return std::get<0>(info.param).name + "_" +
                                  dtype_name(std::get<1>(info.param));
                         });

TEST(Documents, OneShotEqualsPasses) {
  // kernels::forward / backward with documents and the single-shard chain agree bit for bit.
  const std::vector<int64_t> cu = {0, 5, 6, 40, 41};
  const Shape s{1, 2, 41, 8, 8};
  const Problem pr = make_problem(s, DType::kFloat32, true, false, false, 3);
  kernels::LocalDocuments l = kernels::local_documents(cu.data(), 4, 0, 41);
  HostTensor o(pr.dtype, pr.v.numel());
  std::vector<float> fin(4 * 128, 0.0f), last(128, 0.0f);
  kernels::ForwardParams f;
  fill_problem(pr, 16, &f);
  f.docs = l.view();
  f.q = pr.q.data();
  f.k = pr.k.data();
  f.v = pr.v.data();
  f.o = o.data();
  f.q_stride = f.k_stride = kernels::contiguous_bhnd(2, 41, 8);
  f.v_stride = f.o_stride = kernels::contiguous_bhnd(2, 41, 8);
  f.doc_final_states = fin.data();
  f.final_state = last.data();
  kernels::forward(f);
  const DocumentsOut want = documents_forward(s, cu, pr.qd, pr.kd, pr.vd, pr.decay, 1.0, {});
  EXPECT_LT(rel_err(o.to_double(), want.o), 2e-5);
  EXPECT_LT(rel_err(to_double(fin), want.final_states), 2e-5);
  // final_state is the state after the last token: the last document's final state.
  EXPECT_EQ(std::vector<float>(fin.begin() + 3 * 128, fin.end()), last);
}

TEST(Documents, LocalDocuments) {
  const std::vector<int64_t> cu = {0, 3, 10, 12};
  auto l = kernels::local_documents(cu.data(), 3, 0, 3);
  EXPECT_EQ(l.offsets, (std::vector<int64_t>{0, 3}));
  EXPECT_FALSE(l.continues);
  EXPECT_TRUE(l.ends);
  EXPECT_EQ(l.first, 0);
  l = kernels::local_documents(cu.data(), 3, 2, 9);  // [2, 11)
  EXPECT_EQ(l.offsets, (std::vector<int64_t>{0, 1, 8, 9}));
  EXPECT_TRUE(l.continues);
  EXPECT_FALSE(l.ends);
  EXPECT_EQ(l.first, 0);
  l = kernels::local_documents(cu.data(), 3, 4, 2);  // inside document 1
  EXPECT_EQ(l.offsets, (std::vector<int64_t>{0, 2}));
  EXPECT_TRUE(l.continues);
  EXPECT_FALSE(l.ends);
  EXPECT_EQ(l.first, 1);
  EXPECT_FALSE(kernels::forward_reset(l.view()));
  EXPECT_FALSE(kernels::backward_reset(l.view()));
  l = kernels::local_documents(cu.data(), 3, 10, 2);
  EXPECT_EQ(l.first, 2);
  EXPECT_FALSE(l.continues);
  EXPECT_TRUE(l.ends);
  EXPECT_TRUE(kernels::forward_reset(l.view()));
  expect_error([&] { kernels::local_documents(cu.data(), 3, 11, 2); }, "not inside [0, 12)");
}

TEST(Documents, BadOffsetsNameTheArgument) {
  const std::vector<int64_t> unsorted = {0, 5, 5, 9}, late = {1, 9}, short_end = {0, 4, 8};
  expect_error([&] { kernels::check_cu_seqlens(unsorted.data(), 3, 9); },
               "cu_seqlens must be strictly increasing (cu_seqlens[1] = 5, cu_seqlens[2] = 5)");
  expect_error([&] { kernels::check_cu_seqlens(late.data(), 1, 9); }, "cu_seqlens[0] must be 0");
  expect_error([&] { kernels::check_cu_seqlens(short_end.data(), 2, 9); },
               "cu_seqlens[-1] must be the total length T = 9 (got 8)");

  const Shape s{2, 1, 8, 4, 4};
  const Problem pr = make_problem(s, DType::kFloat32, true, false, false, 1);
  HostTensor o(pr.dtype, pr.v.numel());
  const std::vector<int64_t> offs = {0, 3, 8};
  kernels::ForwardParams f;
  fill_problem(pr, 16, &f);
  f.q = pr.q.data();
  f.k = pr.k.data();
  f.v = pr.v.data();
  f.o = o.data();
  f.q_stride = f.k_stride = f.v_stride = f.o_stride = kernels::contiguous_bhnd(1, 8, 4);
  f.docs.offsets = offs.data();
  f.docs.count = 2;
  expect_error([&] { kernels::forward(f); }, "documents need batch (B) = 1");
  f.batch = 1;
  f.docs.count = 1;
  expect_error([&] { kernels::forward(f); }, "docs.offsets[-1] must be the total length T = 8");
  kernels::StateParams sp;
  static_cast<kernels::Problem&>(sp) = f;
  sp.x = pr.k.data();
  sp.y = pr.v.data();
  sp.x_stride = sp.y_stride = f.q_stride;
  std::vector<float> st(16);
  sp.state = st.data();
  expect_error([&] { kernels::local_state(sp); }, "local_state takes no documents");
}

}  // namespace
}  // namespace lightring::test
