// Every validation error of the kernels/ API is triggered and its message checked.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "common/expect_error.h"
#include "core/error.h"
#include "kernels/attention.h"

namespace lightring::kernels {
namespace {

using test::expect_error;

struct Buffers {
  std::vector<float> q, k, v, o;
  float decay[2] = {0.1f, 0.2f};
  ForwardParams params() {
    ForwardParams p;
    p.dtype = DType::kFloat32;
    p.batch = 1;
    p.heads = 2;
    p.seqlen = 5;
    p.qk_dim = 4;
    p.v_dim = 3;
    q.assign(2 * 5 * 4, 0.5f);
    k = q;
    v.assign(2 * 5 * 3, 0.5f);
    o.assign(v.size(), 0.0f);
    p.q = q.data();
    p.k = k.data();
    p.v = v.data();
    p.o = o.data();
    p.q_stride = p.k_stride = contiguous_bhnd(2, 5, 4);
    p.v_stride = p.o_stride = contiguous_bhnd(2, 5, 3);
    p.decay = decay;
    return p;
  }
};

TEST(Validation, ValidCallSucceeds) {
  Buffers b;
  EXPECT_NO_THROW(forward(b.params()));
}

TEST(Validation, ForwardErrorsNameTheArgument) {
  Buffers b;
  auto with = [&](auto mutate) {
    return [&b, mutate] {
      ForwardParams p = b.params();
      mutate(p);
      forward(p);
    };
  };
  expect_error(with([](ForwardParams& p) { p.batch = 0; }), "batch (B) must be >= 1 (got 0)");
  expect_error(with([](ForwardParams& p) { p.heads = -1; }), "heads (H) must be >= 1 (got -1)");
  expect_error(with([](ForwardParams& p) { p.seqlen = 0; }), "seqlen (N) must be >= 1 (got 0)");
  expect_error(with([](ForwardParams& p) { p.qk_dim = 300; }),
               "qk_dim (D) must be in [1, 256] (got 300)");
  expect_error(with([](ForwardParams& p) { p.v_dim = 0; }),
               "v_dim (E) must be in [1, 256] (got 0)");
  expect_error(with([](ForwardParams& p) { p.block_size = -4; }), "block_size must be > 0");
  expect_error(with([](ForwardParams& p) { p.block_size = 512; }),
               "block_size must be <= 256 (got 512)");
  expect_error(with([](ForwardParams& p) { p.q = nullptr; }), "q must not be null");
  expect_error(with([](ForwardParams& p) { p.o = nullptr; }), "o must not be null");
  expect_error(with([](ForwardParams& p) { p.v_stride.seq = 2; }),
               "v strides must be non-negative");
  expect_error(with([&b](ForwardParams& p) {
                 b.decay[1] = -0.5f;
                 p.decay = b.decay;
               }),
               "decay[1] must be finite and >= 0 (got -0.5)");
  b.decay[1] = 0.2f;
  expect_error(with([](ForwardParams& p) { p.dtype = static_cast<DType>(7); }),
               "dtype must be fp32, bf16 or fp16");
  expect_error(with([](ForwardParams& p) { p.scale = INFINITY; }), "scale must be finite");
}

TEST(Validation, BackwardAndStateErrors) {
  Buffers b;
  const ForwardParams f = b.params();
  BackwardParams p;
  static_cast<Problem&>(p) = static_cast<const Problem&>(f);
  p.q = f.q;
  p.k = f.k;
  p.v = f.v;
  p.q_stride = p.k_stride = p.dq_stride = p.dk_stride = f.q_stride;
  p.v_stride = p.do_stride = p.dv_stride = f.v_stride;
  expect_error([&] { backward(p); }, "d_o must not be null");

  StateParams s;
  static_cast<Problem&>(s) = static_cast<const Problem&>(f);
  s.x = f.k;
  s.y = f.v;
  s.x_stride = f.k_stride;
  s.y_stride = f.v_stride;
  expect_error([&] { local_state(s); }, "state output must not be null");
  s.kind = StateKind::kBackward;
  s.x = nullptr;
  expect_error([&] { local_state(s); }, "x (q) must not be null");
}

TEST(Validation, CudaDeviceWithoutGpuIsAClearError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is visible: this checks the no-GPU message";
  Buffers b;
  ForwardParams p = b.params();
  p.device = Device::kCuda;
  expect_error([&] { forward(p); },
               cuda_compiled() ? "no CUDA GPU is visible" : "built without CUDA");
}

TEST(Validation, ParseDtype) {
  EXPECT_EQ(parse_dtype("bf16"), DType::kBFloat16);
  EXPECT_EQ(parse_dtype("float16"), DType::kFloat16);
  expect_error([] { parse_dtype("int8"); }, "dtype must be one of fp32, bf16, fp16 (got 'int8')");
}

}  // namespace
}  // namespace lightring::kernels
