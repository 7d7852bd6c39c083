// MpiCommunicator operations, the DP x SP layout, and the schedule helpers.
#include <gtest/gtest.h>

#include <cstdlib>
#include <numeric>
#include <string>

#include "comm/layout.h"
#include "comm/mpi_communicator.h"
#include "core/error.h"
#include "mpi_fixture.h"
#include "parallel/sequence_parallel.h"
#include "shard_runner.h"

namespace lightring::test {
namespace {

class CommTest : public MpiTest {};

// The one deadline: an explicit value wins, then LIGHTRING_COMM_TIMEOUT_S (strictly parsed),
// then the default.
TEST(Deadline, ExplicitThenEnvironmentThenDefault) {
  const char* saved = std::getenv("LIGHTRING_COMM_TIMEOUT_S");
  const std::string restore = saved ? saved : "";
  unsetenv("LIGHTRING_COMM_TIMEOUT_S");
  EXPECT_EQ(comm::resolve_timeout({}), comm::kDefaultTimeoutS);
  EXPECT_EQ(comm::resolve_timeout(comm::CommOptions{7.0}), 7.0);
  setenv("LIGHTRING_COMM_TIMEOUT_S", "12.5", 1);
  EXPECT_EQ(comm::resolve_timeout({}), 12.5);
  EXPECT_EQ(comm::resolve_timeout(comm::CommOptions{7.0}), 7.0);
  for (const char* bad : {"5abc", "0", "-1", "nan", "inf", "", " ", "1e999"}) {
    setenv("LIGHTRING_COMM_TIMEOUT_S", bad, 1);
    try {
      comm::resolve_timeout({});
      ADD_FAILURE() << "LIGHTRING_COMM_TIMEOUT_S='" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("LIGHTRING_COMM_TIMEOUT_S must be a positive"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_THROW(comm::resolve_timeout(comm::CommOptions{-1.0}), Error);
  if (saved) {
    setenv("LIGHTRING_COMM_TIMEOUT_S", restore.c_str(), 1);
  } else {
    unsetenv("LIGHTRING_COMM_TIMEOUT_S");
  }
}

TEST_F(CommTest, AllGatherPlacesEveryRankBlock) {
  comm::MpiCommunicator comm;
  const int P = comm.size(), r = comm.rank();
  std::vector<float> mine(5), all(5 * P, -1.0f);
  for (int i = 0; i < 5; ++i) mine[i] = 100.0f * r + i;
  comm.all_gather(mine.data(), all.data(), 5, nullptr);
  for (int g = 0; g < P; ++g)
    for (int i = 0; i < 5; ++i) EXPECT_EQ(all[g * 5 + i], 100.0f * g + i);
}

TEST_F(CommTest, RingSendRecvBothWays) {
  comm::MpiCommunicator comm;
  const int P = comm.size(), r = comm.rank();
  const int next = (r + 1) % P, prev = (r - 1 + P) % P;
  std::vector<float> out(3, static_cast<float>(r)), from_prev(3, -1), from_next(3, -1);
  std::vector<float> out2(3, static_cast<float>(10 + r));
  comm.send_recv({{next, out.data(), 3}, {prev, out2.data(), 3}},
                 {{prev, from_prev.data(), 3}, {next, from_next.data(), 3}}, nullptr);
  // With P = 2 (prev == next) the two messages of one peer match in posting order.
  EXPECT_EQ(from_prev[0], static_cast<float>(prev));
  EXPECT_EQ(from_next[0], static_cast<float>(10 + next));
}

// The lean NCCL channel cap (comm/communicator.h): the option, LIGHTRING_NCCL_MAX_CTAS, and the
// user's own NCCL channel settings or LIGHTRING_NCCL_LEAN=0, which leave NCCL's default (0).
TEST_F(CommTest, NcclChannelCapFollowsOptionThenEnvironment) {
  const char* names[] = {"LIGHTRING_NCCL_LEAN", "LIGHTRING_NCCL_MAX_CTAS", "NCCL_MAX_CTAS",
                         "NCCL_MIN_CTAS",       "NCCL_MAX_NCHANNELS",      "NCCL_MIN_NCHANNELS"};
  for (const char* n : names)
    if (std::getenv(n)) GTEST_SKIP() << n << " is set in this environment";
  struct Unset {
    const char* const* names;
    ~Unset() {
      for (int i = 0; i < 6; ++i) unsetenv(names[i]);
    }
  } unset{names};

  comm::CommOptions o;
  EXPECT_EQ(o.nccl_max_ctas, comm::kNcclLeanMaxCtas);
  EXPECT_EQ(comm::resolve_nccl_max_ctas(o), comm::kNcclLeanMaxCtas);
  o.nccl_max_ctas = 0;
  EXPECT_EQ(comm::resolve_nccl_max_ctas(o), 0);
  o.nccl_max_ctas = 6;
  EXPECT_EQ(comm::resolve_nccl_max_ctas(o), 6);
  o.nccl_max_ctas = -1;
  EXPECT_THROW(comm::resolve_nccl_max_ctas(o), lightring::Error);
  o.nccl_max_ctas = 6;

  setenv("LIGHTRING_NCCL_MAX_CTAS", "8", 1);
  EXPECT_EQ(comm::resolve_nccl_max_ctas(o), 8);
  setenv("LIGHTRING_NCCL_MAX_CTAS", "eight", 1);
  EXPECT_THROW(comm::resolve_nccl_max_ctas(o), lightring::Error);
  setenv("LIGHTRING_NCCL_MAX_CTAS", "8", 1);
  for (const char* user : {"NCCL_MAX_CTAS", "NCCL_MIN_CTAS", "NCCL_MAX_NCHANNELS",
                           "NCCL_MIN_NCHANNELS", "LIGHTRING_NCCL_LEAN"}) {
    SCOPED_TRACE(user);
    setenv(user, "0", 1);
    EXPECT_EQ(comm::resolve_nccl_max_ctas(o), 0);
    unsetenv(user);
  }
  setenv("LIGHTRING_NCCL_LEAN", "1", 1);  // anything but 0 keeps the cap
  EXPECT_EQ(comm::resolve_nccl_max_ctas(o), 8);
}

TEST_F(CommTest, LayoutFormulas) {
  // 8 ranks as DP=2 x SP=4: SP groups {0..3}, {4..7}; DP groups {r, r+4}.
  for (int r = 0; r < 8; ++r) {
    const comm::GroupLayout l = comm::make_layout(r, 8, 4);
    EXPECT_EQ(l.sp_rank, r % 4);
    EXPECT_EQ(l.dp_rank, r / 4);
    EXPECT_EQ(l.dp_size, 2);
  }
  EXPECT_THROW(comm::make_layout(0, 6, 4), Error);
}

TEST_F(CommTest, SplitGroupsMatchLayout) {
  comm::MpiCommunicator world;
  const int P = world.size();
  const int sp = P % 2 == 0 ? 2 : 1;
  comm::ProcessGroups g = comm::make_groups(world, sp);
  EXPECT_EQ(g.sp->size(), sp);
  EXPECT_EQ(g.dp->size(), P / sp);
  EXPECT_EQ(g.sp->rank(), world.rank() % sp);
  EXPECT_EQ(g.dp->rank(), world.rank() / sp);
  // The SP group holds consecutive world ranks: gather them.
  const int64_t me = world.rank();
  std::vector<int64_t> members(sp);
  g.sp->all_gather_host(&me, members.data(), 1);
  for (int i = 0; i < sp; ++i) EXPECT_EQ(members[i], (world.rank() / sp) * sp + i);
  std::vector<int64_t> dp_members(P / sp);
  g.dp->all_gather_host(&me, dp_members.data(), 1);
  for (int i = 0; i < P / sp; ++i) EXPECT_EQ(dp_members[i], world.rank() % sp + i * sp);
}

TEST_F(CommTest, ScheduleNamesAndCostModel) {
  using parallel::Schedule;
  for (Schedule s : {Schedule::kRing, Schedule::kAllGather, Schedule::kScan, Schedule::kAuto})
    EXPECT_EQ(parallel::parse_schedule(parallel::schedule_name(s)), s);
  EXPECT_THROW(parallel::parse_schedule("tree"), Error);
  // Two ranks: one hop whatever the schedule; auto picks ring.
  EXPECT_EQ(parallel::choose_schedule(Schedule::kAuto, 2, 1 << 20), Schedule::kRing);
  // Many ranks, small latency-bound messages: log-depth scan beats P-1 hops.
  EXPECT_EQ(parallel::choose_schedule(Schedule::kAuto, 64, 4096), Schedule::kScan);
  // An explicit schedule is returned unchanged.
  EXPECT_EQ(parallel::choose_schedule(Schedule::kAllGather, 64, 4096), Schedule::kAllGather);
  EXPECT_GT(parallel::schedule_cost_us(Schedule::kRing, 8, 1 << 20),
            parallel::schedule_cost_us(Schedule::kRing, 4, 1 << 20));
}

// The two-level model (docs/scaling.md): ring pays one inter-node hop per node
// boundary, scan and allgather pay the inter-node link in every round.
TEST_F(CommTest, TwoLevelCostModel) {
  using parallel::Schedule;
  parallel::LinkModel link;
  link.latency_us = 10;
  link.bandwidth_Bpus = 100e3;
  link.combine_Bpus = 1000e3;
  link.ranks_per_node = 8;
  link.inter_latency_us = 20;
  link.inter_bandwidth_Bpus = 50e3;
  const double m = 2 << 20;
  const double hop = 10 + m / 100e3, hop_e = 20 + m / 50e3, fold = m / 1000e3;
  // 16 ranks = 2 nodes: 14 hops on a node, 1 between nodes.
  EXPECT_NEAR(parallel::schedule_cost_us(Schedule::kRing, 16, m, link),
              14 * (hop + fold) + (hop_e + fold), 1e-6);
  EXPECT_NEAR(parallel::schedule_cost_us(Schedule::kScan, 16, m, link), 4 * (hop_e + 2 * fold),
              1e-6);
  EXPECT_NEAR(parallel::schedule_cost_us(Schedule::kAllGather, 16, m, link),
              20 * 4 + 15 * m / 50e3 + 15 * fold, 1e-6);
  // Within one node the one-level formulas apply.
  EXPECT_NEAR(parallel::schedule_cost_us(Schedule::kRing, 8, m, link), 7 * (hop + fold), 1e-6);
  EXPECT_NEAR(parallel::schedule_cost_us(Schedule::kScan, 8, m, link), 3 * (hop + 2 * fold), 1e-6);
  EXPECT_EQ(parallel::choose_schedule(Schedule::kAuto, 2, m, link), Schedule::kRing);
  EXPECT_EQ(parallel::choose_schedule(Schedule::kAuto, 4096, m, link), Schedule::kScan);
  link.ranks_per_node = -1;
  EXPECT_THROW(parallel::schedule_cost_us(Schedule::kRing, 16, m, link), Error);
}

// DP x SP: the world split into SP groups of 2 consecutive ranks; each SP group
// runs its own sequence (a different seed per DP rank) and must match it.
TEST_F(CommTest, DataParallelTimesSequenceParallel) {
  if (world_size_ % 2 != 0) GTEST_SKIP() << "needs an even number of ranks (DP x SP=2)";
  comm::MpiCommunicator world(MPI_COMM_WORLD, comm::CommOptions{60.0});
  comm::ProcessGroups g = comm::make_groups(world, 2);
  const std::vector<int64_t> lengths = {70, 45};
  const GlobalProblem gp(Shape{1, 2, 115, 6, 5}, true, true, 500 + g.layout.dp_rank);
  const ShardResult res = run_shard(*g.sp, gp, lengths, parallel::Schedule::kRing);
  expect_matches_oracle(gp, lengths, g.sp->rank(), res, 2e-5);
  // The DP replicas hold different sequences: their outputs must differ.
  if (g.dp->size() > 1) {
    const int64_t n = static_cast<int64_t>(res.o.size());
    std::vector<float> mine(res.o.begin(), res.o.end()), all(n * g.dp->size());
    g.dp->all_gather(mine.data(), all.data(), n, nullptr);
    EXPECT_NE(all[0], all[n]);
  }
}

}  // namespace
}  // namespace lightring::test
