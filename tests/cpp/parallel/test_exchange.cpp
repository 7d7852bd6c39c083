// parallel::exclusive_scan with and without resets (parallel/exchange.h) against a direct
// float64 fold on the host: every schedule, both scan directions, every reset pattern of the
// group (2^P of them, none and all included), unequal shard lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "comm/mpi_communicator.h"
#include "mpi_fixture.h"
#include "parallel/exchange.h"

namespace lightring::test {
namespace {

using parallel::Schedule;

constexpr int64_t kBatch = 1, kHeads = 3, kPerHead = 7;
constexpr size_t kCount = kBatch * kHeads * kPerHead;

// excl(v) = Σ_{u<v, no reset at u+1..v-1} λ_h^{len(u+1..v-1)} X_u, positions u, v in scan
// order, evaluated term by term in double.
std::vector<double> direct_excl(const std::vector<std::vector<float>>& x,
                                const std::vector<int64_t>& lengths,
                                const std::vector<uint8_t>& resets, const std::vector<float>& decay,
                                bool reverse, int rank) {
  const int P = static_cast<int>(lengths.size());
  auto rank_of = [&](int u) { return reverse ? P - 1 - u : u; };
  const int v = reverse ? P - 1 - rank : rank;
  std::vector<double> out(kCount, 0.0);
  for (int u = 0; u < v; ++u) {
    bool blocked = false;
    int64_t span = 0;
    for (int w = u + 1; w < v; ++w) {
      blocked = blocked || (!resets.empty() && resets[rank_of(w)]);
      span += lengths[rank_of(w)];
    }
    if (blocked) continue;
    for (int64_t h = 0; h < kHeads; ++h) {
      const double a = std::exp(-static_cast<double>(decay[h]) * static_cast<double>(span));
      for (int64_t i = 0; i < kPerHead; ++i)
        out[h * kPerHead + i] += a * x[rank_of(u)][h * kPerHead + i];
    }
  }
  return out;
}

class ExchangeTest : public MpiTest, public ::testing::WithParamInterface<Schedule> {};

TEST_P(ExchangeTest, ResetsMatchDirectFold) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{60.0});
  const int P = comm.size(), r = comm.rank();
  std::mt19937_64 rng(1234 + P);  // the same draws on every rank
  std::uniform_int_distribution<int64_t> len_dist(1, 9);
  std::vector<int64_t> lengths(P);
  for (int64_t& n : lengths) n = len_dist(rng);
  std::vector<std::vector<float>> x(P);
  for (auto& xs : x) xs = to_float(randn(kCount, rng));
  const std::vector<float> decay = {0.0f, 0.08f, 0.6f};

  int messages_without[2] = {-1, -1};                      // per direction
  for (int pattern = -1; pattern < (1 << P); ++pattern) {  // -1: resets left empty
    std::vector<uint8_t> resets;
    if (pattern >= 0)
      for (int g = 0; g < P; ++g) resets.push_back((pattern >> g) & 1);
    for (bool reverse : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "pattern " << pattern << " reverse " << reverse);
      parallel::ScanSpec spec;
      spec.batch = kBatch;
      spec.heads = kHeads;
      spec.per_head = kPerHead;
      spec.decay = decay.data();
      spec.lengths = lengths;
      spec.reverse = reverse;
      spec.resets = resets;
      std::vector<float> excl(kCount, NAN);
      const int sent = parallel::exclusive_scan(comm, GetParam(), spec, x[r].data(), excl.data());
      const std::vector<double> want = direct_excl(x, lengths, resets, decay, reverse, r);
      // EXPECT, not ASSERT: every rank must reach the next pattern's exchange.
      double worst = 0.0;
      for (size_t i = 0; i < kCount; ++i) {
        const double e = std::abs(excl[i] - want[i]) / (1.0 + std::abs(want[i]));
        if (!(e <= worst)) worst = e;  // a NaN stays (and fails below)
      }
      EXPECT_LE(worst, 1e-5) << "rank " << r;
      // Resets skip combines only: every pattern sends the messages of the plain scan.
      if (messages_without[reverse] < 0) messages_without[reverse] = sent;
      EXPECT_EQ(sent, messages_without[reverse]);
    }
  }
}

TEST_P(ExchangeTest, RejectsResetsOfTheWrongSize) {
  comm::MpiCommunicator comm;
  parallel::ScanSpec spec;
  spec.batch = kBatch;
  spec.heads = kHeads;
  spec.per_head = kPerHead;
  spec.lengths.assign(comm.size(), 4);
  spec.resets.assign(comm.size() + 1, 0);
  std::vector<float> x(kCount, 1.0f), excl(kCount);
  EXPECT_THROW(parallel::exclusive_scan(comm, GetParam(), spec, x.data(), excl.data()), Error);
}

INSTANTIATE_TEST_SUITE_P(Schedules, ExchangeTest,
                         ::testing::Values(Schedule::kRing, Schedule::kAllGather, Schedule::kScan),
                         [](const auto& info) { return parallel::schedule_name(info.param); });

}  // namespace
}  // namespace lightring::test
