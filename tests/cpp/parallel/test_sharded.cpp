// Sharded equals unsharded: every schedule, equal / unequal / odd shard
// lengths, decay on and off, with and without the global states (S0 on rank 0,
// G on the last rank): o, dq, dk, dv on every rank, the final state on the last
// rank and dS0 on rank 0 against the float64 oracle of the whole sequence.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "comm/mpi_communicator.h"
#include "common/expect_error.h"
#include "shard_runner.h"

namespace lightring::test {
namespace {

using parallel::Schedule;

enum class Split { kEqual, kUnequal, kOdd1001 };

const char* split_name(Split s) {
  switch (s) {
    case Split::kEqual:
      return "equal";
    case Split::kUnequal:
      return "unequal";
    case Split::kOdd1001:
      return "odd1001";
  }
  return "?";
}

// Shard lengths for P ranks. Unequal includes a 1-token shard, shards shorter
// and longer than a block (64), and a length that is not a multiple of it.
std::vector<int64_t> make_split(Split split, int P) {
  switch (split) {
    case Split::kEqual:
      return std::vector<int64_t>(P, 48);
    case Split::kOdd1001:
      return equal_split(1001, P);
    case Split::kUnequal: {
      const int64_t pattern[] = {130, 1, 67, 9};
      std::vector<int64_t> len(P);
      for (int r = 0; r < P; ++r) len[r] = pattern[r % 4];
      if (P == 1) len[0] = 131;
      return len;
    }
  }
  return {};
}

using Param = std::tuple<Schedule, Split, bool /*decay*/, bool /*states*/>;

class ShardedTest : public MpiTest, public ::testing::WithParamInterface<Param> {};

TEST_P(ShardedTest, MatchesUnshardedOracle) {
  const auto [schedule, split, decay, states] = GetParam();
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{60.0});
  const std::vector<int64_t> lengths = make_split(split, comm.size());
  int64_t N = 0;
  for (int64_t n : lengths) N += n;
  // Odd dims and heads; B = 2 so that (b, h) indexing of the states is exercised.
  const Shape shape{2, 3, N, 5, 7};
  const GlobalProblem gp(shape, decay, states, /*seed=*/1234 + N);
  const ShardResult res = run_shard(comm, gp, lengths, schedule);
  expect_matches_oracle(gp, lengths, comm.rank(), res, 2e-5);
  EXPECT_NE(res.fwd.schedule, Schedule::kAuto);
  // Messages this rank sent in forward: ring 1 (0 on the last rank),
  // allgather P-1, scan at most ceil(log2 P) rounds.
  const int P = comm.size();
  int rounds = 0;
  while ((1 << rounds) < P) ++rounds;
  switch (res.fwd.schedule) {
    case Schedule::kRing:
      EXPECT_EQ(res.fwd.messages, comm.rank() + 1 < P ? 1 : 0);
      break;
    case Schedule::kAllGather:
      EXPECT_EQ(res.fwd.messages, P - 1);
      break;
    case Schedule::kScan:
      EXPECT_LE(res.fwd.messages, rounds);
      break;
    case Schedule::kAuto:
      break;
  }
  EXPECT_EQ(res.fwd.message_bytes, static_cast<size_t>(2 * 3 * 5 * 7 * 4));
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [schedule, split, decay, states] = info.param;
  return std::string(parallel::schedule_name(schedule)) + "_" + split_name(split) +
         (decay ? "_decay" : "_nodecay") + (states ? "_states" : "_nostates");
}

INSTANTIATE_TEST_SUITE_P(Schedules, ShardedTest,
                         ::testing::Combine(::testing::Values(Schedule::kRing, Schedule::kAllGather,
                                                              Schedule::kScan, Schedule::kAuto),
                                            ::testing::Values(Split::kEqual, Split::kUnequal,
                                                              Split::kOdd1001),
                                            ::testing::Bool(), ::testing::Bool()),
                         param_name);

// bf16 inputs: the shards see exactly the rounded values the oracle sees; the
// tolerance covers bf16 rounding of the outputs.
class ShardedBf16Test : public MpiTest {};

TEST_F(ShardedBf16Test, RingAndScanMatchOracle) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{60.0});
  const std::vector<int64_t> lengths = make_split(Split::kUnequal, comm.size());
  int64_t N = 0;
  for (int64_t n : lengths) N += n;
  const GlobalProblem gp(Shape{1, 2, N, 16, 8}, true, true, 99, DType::kBFloat16);
  for (Schedule s : {Schedule::kRing, Schedule::kScan}) {
    const ShardResult res = run_shard(comm, gp, lengths, s, DType::kBFloat16);
    expect_matches_oracle(gp, lengths, comm.rank(), res, 1.5e-2);
  }
}

// Inputs the caller already agreed (Options::agreed_lengths, Python's agreement): no agreement
// round, the same result as an agreed call for every schedule; an agreed length that is not
// this rank's shard, or a list of the wrong size, is an error on that rank naming both.
class AgreedLengthsTest : public MpiTest {};

TEST_F(AgreedLengthsTest, MatchOracleAndCheckOwnEntry) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{60.0});
  const std::vector<int64_t> lengths = make_split(Split::kUnequal, comm.size());
  int64_t N = 0;
  for (int64_t n : lengths) N += n;
  const GlobalProblem gp(Shape{2, 3, N, 5, 7}, true, true, 4321);
  for (Schedule s : {Schedule::kRing, Schedule::kAllGather, Schedule::kScan, Schedule::kAuto}) {
    SCOPED_TRACE(parallel::schedule_name(s));
    const ShardResult res = run_shard(comm, gp, lengths, s, DType::kFloat32, lengths);
    expect_matches_oracle(gp, lengths, comm.rank(), res, 2e-5);
  }
  std::vector<int64_t> wrong = lengths;
  wrong[comm.rank()] += 1;
  expect_error([&] { run_shard(comm, gp, lengths, Schedule::kRing, DType::kFloat32, wrong); },
               "was agreed with length " + std::to_string(wrong[comm.rank()]));
  if (comm.size() == 1) return;
  expect_error(
      [&] {
        run_shard(comm, gp, lengths, Schedule::kRing, DType::kFloat32, std::vector<int64_t>(1, 3));
      },
      "agreed_lengths lists 1 shard lengths");
}

// The schedules agree with each other bit for bit up to fp32 rounding of the
// combine order: compare scan and all-gather against ring on this rank.
class ScheduleAgreementTest : public MpiTest {};

TEST_F(ScheduleAgreementTest, AllSchedulesAgree) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{60.0});
  const std::vector<int64_t> lengths = make_split(Split::kUnequal, comm.size());
  int64_t N = 0;
  for (int64_t n : lengths) N += n;
  const GlobalProblem gp(Shape{1, 4, N, 8, 8}, true, true, 7);
  const ShardResult ring = run_shard(comm, gp, lengths, Schedule::kRing);
  for (Schedule s : {Schedule::kAllGather, Schedule::kScan}) {
    const ShardResult other = run_shard(comm, gp, lengths, s);
    EXPECT_LE(rel_err(other.o, ring.o), 1e-6) << parallel::schedule_name(s);
    EXPECT_LE(rel_err(other.dq, ring.dq), 1e-6) << parallel::schedule_name(s);
    EXPECT_LE(rel_err(other.dk, ring.dk), 1e-6) << parallel::schedule_name(s);
    EXPECT_LE(rel_err(other.dv, ring.dv), 1e-6) << parallel::schedule_name(s);
  }
}

}  // namespace
}  // namespace lightring::test
