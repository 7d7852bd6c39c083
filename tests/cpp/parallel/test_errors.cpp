// Failures must be reported, never hang: a rank that skips the exchange makes
// the others throw a timeout naming it; inputs that disagree across ranks are
// reported on every rank.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "comm/mpi_communicator.h"
#include "core/error.h"
#include "shard_runner.h"

namespace lightring::test {
namespace {

using parallel::Schedule;
using Clock = std::chrono::steady_clock;

constexpr double kTimeoutS = 1.5;

class TimeoutTest : public MpiTest, public ::testing::WithParamInterface<Schedule> {};

// The last rank never calls forward; every other rank must throw within the
// deadline, naming that rank.
TEST_P(TimeoutTest, SkippedRankIsNamed) {
  if (world_size_ < 2) GTEST_SKIP() << "needs 2 or more ranks";
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{kTimeoutS});
  const int skipper = comm.size() - 1;
  const std::vector<int64_t> lengths(comm.size(), 16);
  const GlobalProblem gp(Shape{1, 2, 16 * comm.size(), 4, 4}, true, false, 3);
  if (comm.rank() == skipper) return;
  const auto t0 = Clock::now();
  std::string message;
  try {
    run_shard(comm, gp, lengths, GetParam());
  } catch (const Error& e) {
    message = e.what();
  }
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_NE(message.find("timed out"), std::string::npos) << message;
  EXPECT_NE(message.find("rank " + std::to_string(skipper)), std::string::npos) << message;
  EXPECT_LT(waited, kTimeoutS + 10.0);
  EXPECT_TRUE(comm.aborted());
  EXPECT_THROW(comm.barrier(), Error);  // an aborted communicator refuses further work
}

INSTANTIATE_TEST_SUITE_P(Schedules, TimeoutTest,
                         ::testing::Values(Schedule::kRing, Schedule::kAllGather, Schedule::kScan),
                         [](const auto& info) { return parallel::schedule_name(info.param); });

// A rank that takes part in the shape agreement but then skips every state
// message (it "forgets" the exchange): a Communicator that drops send_recv and
// all_gather and forwards everything else.
class SkipExchangeCommunicator final : public comm::Communicator {
 public:
  explicit SkipExchangeCommunicator(comm::Communicator& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  comm::MemorySpace memory_space() const override { return inner_.memory_space(); }
  const char* backend_name() const override { return inner_.backend_name(); }
  void send_recv(const std::vector<comm::SendOp>&, const std::vector<comm::RecvOp>&,
                 void*) override {}
  void all_gather(const float*, float*, size_t, void*) override {}
  void all_gather_host(const int64_t* s, int64_t* r, size_t n) override {
    inner_.all_gather_host(s, r, n);
  }
  void barrier() override { inner_.barrier(); }
  void synchronize(void* s) override { inner_.synchronize(s); }
  void abort() override { inner_.abort(); }
  bool aborted() const override { return inner_.aborted(); }
  std::unique_ptr<comm::Communicator> split(int, int) override {
    LR_THROW("SkipExchangeCommunicator::split is not supported");
  }

 private:
  comm::Communicator& inner_;
};

class SkippedExchangeTest : public MpiTest, public ::testing::WithParamInterface<Schedule> {};

// Every other rank fails with a timeout (directly waiting for the skipper, or
// for a neighbour that failed) within a few deadlines; at least one names it.
TEST_P(SkippedExchangeTest, OthersFailWithinDeadline) {
  if (world_size_ < 2) GTEST_SKIP() << "needs 2 or more ranks";
  comm::MpiCommunicator mpi(MPI_COMM_WORLD, comm::CommOptions{kTimeoutS});
  SkipExchangeCommunicator skipping(mpi);
  const int skipper = mpi.size() - 1;
  const bool me = mpi.rank() == skipper;
  const std::vector<int64_t> lengths(mpi.size(), 16);
  const GlobalProblem gp(Shape{1, 2, 16 * mpi.size(), 4, 4}, true, false, 5);
  const auto t0 = Clock::now();
  std::string message;
  try {
    if (me) {
      run_shard(skipping, gp, lengths, GetParam());
    } else {
      run_shard(mpi, gp, lengths, GetParam());
    }
  } catch (const Error& e) {
    message = e.what();
  }
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  const bool names_skipper = message.find("rank " + std::to_string(skipper)) != std::string::npos;
  int local = names_skipper && !me ? 1 : 0, any = 0;
  MPI_Allreduce(&local, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  EXPECT_EQ(any, 1) << "no rank named the skipping rank " << skipper;
  if (!me) {
    EXPECT_NE(message.find("timed out"), std::string::npos) << message;
    EXPECT_LT(waited, 3 * kTimeoutS + 10.0);
  }
}

INSTANTIATE_TEST_SUITE_P(Schedules, SkippedExchangeTest,
                         ::testing::Values(Schedule::kRing, Schedule::kAllGather, Schedule::kScan),
                         [](const auto& info) { return parallel::schedule_name(info.param); });

// A point-to-point receive from a peer that never sends.
TEST_F(MpiTest, SendRecvTimeoutNamesPeer) {
  if (world_size_ < 2) GTEST_SKIP() << "needs 2 or more ranks";
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{0.5});
  if (comm.rank() != 0) return;  // rank 1 never sends
  std::vector<float> buf(4);
  try {
    comm.send_recv({}, {{1, buf.data(), 4}}, nullptr);
    ADD_FAILURE() << "send_recv returned although rank 1 never sent";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("waiting for rank 1"), std::string::npos) << e.what();
  }
}

// Rank 1 (or rank 0 with one rank) changes one dimension; every rank throws.
enum class Bad {
  kBatch,
  kHeads,
  kQkDim,
  kVDim,
  kDType,
  kDecayPresence,
  kInitialStateOffRoot,
  kGradientOffTail,
  kInvalidLocal,
  kDecayValues,      // same sum and index-weighted sum, different values
  kSchedule,         // another schedule on the culprit
  kSkippedBackward,  // the culprit runs its next forward while the others run backward
  kScale
};

class BadInputTest : public MpiTest, public ::testing::WithParamInterface<Bad> {};

TEST_P(BadInputTest, ReportedOnEveryRank) {
  const Bad bad = GetParam();
  if (world_size_ < 2 && bad != Bad::kInvalidLocal)
    GTEST_SKIP() << "a mismatch needs 2 or more ranks";
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{20.0});
  const int culprit = comm.size() > 1 ? 1 : 0;
  const bool me = comm.rank() == culprit;
  Shape shape{1, 2, 12, 4, 3};
  if (me && bad == Bad::kBatch) shape.B = 2;
  if (me && bad == Bad::kHeads) shape.H = 3;
  if (me && bad == Bad::kQkDim) shape.D = 5;
  if (me && bad == Bad::kVDim) shape.E = 6;
  const GlobalProblem gp(shape, true, false, 11);
  std::vector<float> s0(shape.B * shape.H * shape.D * shape.E, 1.0f);
  HostTensor q = HostTensor::from_double(gp.q, DType::kFloat32);
  HostTensor k = HostTensor::from_double(gp.k, DType::kFloat32);
  HostTensor v = HostTensor::from_double(gp.v, DType::kFloat32);
  HostTensor o(DType::kFloat32, gp.v.size());
  std::vector<float> decay = to_float(gp.decay);
  if (me && bad == Bad::kDecayValues) {
    // +e on head 0, -2e on head 1, +e on head 2: Σ s_h and Σ (h+1)·s_h are unchanged.
    ASSERT_GE(shape.H, 2);
    const float e = 1.0f / 1024;
    decay[0] += e;
    decay[1] -= 2 * e;
    if (shape.H > 2) decay[2] += e;
  }
  std::vector<float> s_in(s0.size());

  kernels::ForwardParams fp;
  fp.dtype = (me && bad == Bad::kDType) ? DType::kBFloat16 : DType::kFloat32;
  fp.batch = shape.B;
  fp.heads = shape.H;
  fp.seqlen = shape.N;
  fp.qk_dim = shape.D;
  fp.v_dim = shape.E;
  fp.decay = (me && bad == Bad::kDecayPresence) ? nullptr : decay.data();
  fp.q = q.data();
  fp.k = (me && bad == Bad::kInvalidLocal) ? nullptr : k.data();
  fp.v = v.data();
  fp.o = o.data();
  fp.q_stride = fp.k_stride = kernels::contiguous_bhnd(shape.H, shape.N, shape.D);
  fp.v_stride = fp.o_stride = kernels::contiguous_bhnd(shape.H, shape.N, shape.E);
  if (me && bad == Bad::kInitialStateOffRoot) fp.initial_state = s0.data();
  if (me && bad == Bad::kScale) fp.scale = 0.5f;
  parallel::Options options;
  options.schedule = parallel::Schedule::kRing;
  if (me && bad == Bad::kSchedule) options.schedule = parallel::Schedule::kScan;

  std::string message;
  try {
    if (bad == Bad::kGradientOffTail || (bad == Bad::kSkippedBackward && !me)) {
      // Backward with G passed on rank 0 (only the last rank may pass it).
      HostTensor d_o = HostTensor::from_double(gp.dout, DType::kFloat32);
      HostTensor dq(DType::kFloat32, gp.q.size()), dk(DType::kFloat32, gp.k.size()),
          dv(DType::kFloat32, gp.v.size());
      kernels::BackwardParams bp =
          kernels::backward_params(fp, d_o.data(), dq.data(), dk.data(), dv.data());
      if (bad == Bad::kGradientOffTail) bp.d_final_state = comm.rank() == 0 ? s0.data() : nullptr;
      parallel::backward(comm, bp, options);
    } else {
      parallel::forward(comm, fp, s_in.data(), options);
    }
  } catch (const Error& e) {
    message = e.what();
  }
  ASSERT_FALSE(message.empty()) << "rank " << comm.rank() << " did not report the bad input";
  const bool disagreement = bad != Bad::kInvalidLocal && bad != Bad::kSkippedBackward;
  if (disagreement) EXPECT_NE(message.find("do not agree"), std::string::npos) << message;
  const char* expected = "";
  switch (bad) {
    case Bad::kHeads:
      expected = "heads (H) differs";
      break;
    case Bad::kQkDim:
      expected = "qk_dim (D) differs";
      break;
    case Bad::kVDim:
      expected = "v_dim (E) differs";
      break;
    case Bad::kDType:
      expected = "dtype differs";
      break;
    case Bad::kInitialStateOffRoot:
      expected = "passed an initial state";
      break;
    case Bad::kInvalidLocal:
      // Every rank, not only the culprit, reports the culprit's own reason.
      expected = "rank 1 rejected its input: lightring error [rank 1]: k must not be null";
      if (comm.size() == 1) expected = "k must not be null";
      break;
    case Bad::kDecayValues:
      expected = "decay values differ";
      break;
    case Bad::kSchedule:
      expected = "schedule differs: rank 0 has ring; rank 1 has scan;";
      break;
    case Bad::kSkippedBackward:
      expected = "every rank must run forward and then backward";
      break;
    case Bad::kScale:
      expected = "scale differs";
      break;
    default:
      break;
  }
  EXPECT_NE(message.find(expected), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(Mismatches, BadInputTest,
                         ::testing::Values(Bad::kBatch, Bad::kHeads, Bad::kQkDim, Bad::kVDim,
                                           Bad::kDType, Bad::kDecayPresence,
                                           Bad::kInitialStateOffRoot, Bad::kGradientOffTail,
                                           Bad::kInvalidLocal, Bad::kDecayValues, Bad::kSchedule,
                                           Bad::kSkippedBackward, Bad::kScale));

}  // namespace
}  // namespace lightring::test
