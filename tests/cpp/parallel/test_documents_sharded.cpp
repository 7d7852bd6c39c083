// Packed documents, sharded over the ranks (parallel/sequence_parallel.h): every schedule, fp32
// and bf16, with and without per-document initial states and final-state gradients, on layouts
// that put document boundaries everywhere the exchange can see them; o, dq, dk, dv, per-document
// final states and initial-state gradients against the per-document float64 oracle of the whole
// stream (documents_runner.h). Plus the agreed-inputs path and the errors every rank must raise
// (the same message on every rank, before any exchange).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <tuple>

#include "comm/mpi_communicator.h"
#include "common/expect_error.h"
#include "documents_runner.h"

namespace lightring::test {
namespace {

using parallel::Schedule;

enum class Layout { kSpan3, kEdges, kOneToken, kWhole };

const char* layout_name(Layout l) {
  switch (l) {
    case Layout::kSpan3:
      return "span3";
    case Layout::kEdges:
      return "edges";
    case Layout::kOneToken:
      return "onetoken";
    case Layout::kWhole:
      return "whole";
  }
  return "?";
}

struct LayoutSpec {
  std::vector<int64_t> shards;  // per rank
  std::vector<int64_t> cu;      // global document offsets
};

// The offsets 0 < cuts… < T of the given interior cut points (outside (0, T) dropped).
std::vector<int64_t> cu_from_cuts(std::vector<int64_t> cuts, int64_t T) {
  std::vector<int64_t> cu{0};
  std::sort(cuts.begin(), cuts.end());
  for (int64_t c : cuts)
    if (c > cu.back() && c < T) cu.push_back(c);
  cu.push_back(T);
  return cu;
}

// Shard lengths and documents for P ranks:
//   span3     unequal shards; one document from rank 0 into rank 2 (on 4 ranks it spans 3 of
//             them, the next one the last two ranks)
//   edges     equal odd shards (33); a boundary on every shard edge and one inside rank 0
//   onetoken  unequal shards with a 1-token shard; runs of 1-token documents, and a document
//             passing through the 1-token shard (it continues and goes on)
//   whole     one long document over every rank, with a 1-token and a 2-token document at the
//             two ends of the stream
LayoutSpec make_layout(Layout l, int P) {
  LayoutSpec spec;
  std::vector<int64_t> cuts;
  switch (l) {
    case Layout::kSpan3: {
      const int64_t pattern[] = {40, 23, 70, 17};
      for (int r = 0; r < P; ++r) spec.shards.push_back(pattern[r % 4]);
      const auto off = offsets_of(spec.shards);
      cuts = {5};
      if (P >= 3) cuts.push_back(off[2] + 7);
      if (P >= 4) cuts.push_back(off[3] + 9);
      if (P < 3) cuts.push_back(off[P] - 11);
      break;
    }
    case Layout::kEdges: {
      spec.shards.assign(P, 33);
      const auto off = offsets_of(spec.shards);
      cuts = {17};
      for (int r = 1; r < P; ++r) cuts.push_back(off[r]);
      break;
    }
    case Layout::kOneToken: {
      const int64_t pattern[] = {70, 1, 19, 45};
      for (int r = 0; r < P; ++r) spec.shards.push_back(pattern[r % 4]);
      if (P == 1) spec.shards[0] = 90;
      // Document lengths 1, 1, 30, 1, 47 (through the 1-token shard), 1, 1, 25, then the rest.
      int64_t at = 0;
      for (int64_t len : {1, 1, 30, 1, 47, 1, 1, 25}) cuts.push_back(at += len);
      break;
    }
    case Layout::kWhole: {
      const int64_t pattern[] = {29, 64, 3, 50};
      for (int r = 0; r < P; ++r) spec.shards.push_back(pattern[r % 4]);
      const int64_t T = offsets_of(spec.shards).back();
      cuts = {1, T - 2};
      break;
    }
  }
  spec.cu = cu_from_cuts(cuts, offsets_of(spec.shards).back());
  return spec;
}

DocsProblem make_problem(Layout l, int P, bool states, DType dtype, uint64_t seed) {
  LayoutSpec spec = make_layout(l, P);
  return DocsProblem(/*H=*/3, /*D=*/5, /*E=*/7, spec.cu, spec.shards, states, seed, dtype);
}

using Param = std::tuple<Schedule, DType, Layout, bool /*states*/>;

class DocumentsShardedTest : public MpiTest, public ::testing::WithParamInterface<Param> {};

TEST_P(DocumentsShardedTest, MatchesPerDocumentOracle) {
  const auto [schedule, dtype, layout, states] = GetParam();
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{60.0});
  const DocsProblem pr = make_problem(layout, comm.size(), states, dtype, 77 + comm.size());
  const DocsShardResult res = run_docs_shard(comm, pr, schedule);
  expect_docs_match(pr, comm.rank(), res, dtype == DType::kFloat32 ? 2e-5 : 1.5e-2);
  EXPECT_EQ(res.fwd.schedule, schedule);
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [schedule, dtype, layout, states] = info.param;
  return std::string(parallel::schedule_name(schedule)) + "_" + dtype_name(dtype) + "_" +
         layout_name(layout) + (states ? "_states" : "_nostates");
}

INSTANTIATE_TEST_SUITE_P(Schedules, DocumentsShardedTest,
                         ::testing::Combine(::testing::Values(Schedule::kRing, Schedule::kAllGather,
                                                              Schedule::kScan),
                                            ::testing::Values(DType::kFloat32, DType::kBFloat16),
                                            ::testing::Values(Layout::kSpan3, Layout::kEdges,
                                                              Layout::kOneToken, Layout::kWhole),
                                            ::testing::Bool()),
                         param_name);

// The layout the tests rely on: on 4 ranks span3 has a document over ranks 0..2 and edges a
// boundary on every shard edge (no rank continues a document).
TEST(DocumentsLayoutTest, LayoutsHaveTheirShape) {
  const LayoutSpec span = make_layout(Layout::kSpan3, 4);
  EXPECT_EQ(span.cu, (std::vector<int64_t>{0, 5, 40 + 23 + 7, 40 + 23 + 70 + 9, 150}));
  const LayoutSpec edges = make_layout(Layout::kEdges, 4);
  EXPECT_EQ(edges.cu, (std::vector<int64_t>{0, 17, 33, 66, 99, 132}));
  const LayoutSpec one = make_layout(Layout::kOneToken, 4);
  const kernels::LocalDocuments mid = kernels::local_documents(
      one.cu.data(), static_cast<int64_t>(one.cu.size()) - 1, /*start=*/70, /*length=*/1);
  EXPECT_TRUE(mid.continues);
  EXPECT_FALSE(mid.ends);  // the 1-token shard lies inside a document
}

// The caller agreed the inputs (Options::agreed_lengths + agreed_documents): the same result;
// an empty or wrong agreed_documents is an error naming it.
class DocumentsAgreedTest : public MpiTest {};

TEST_F(DocumentsAgreedTest, AgreedDocumentsMatchOracle) {
  comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{60.0});
  const int P = comm.size(), r = comm.rank();
  const DocsProblem pr = make_problem(Layout::kSpan3, P, true, DType::kFloat32, 5);
  std::vector<parallel::DocumentFlags> flags;
  const auto off = offsets_of(pr.lengths);
  for (int g = 0; g < P; ++g)
    flags.push_back(parallel::document_flags(
        kernels::local_documents(pr.cu.data(), pr.num_docs(), off[g], pr.lengths[g]).view()));
  auto agreed = [&](std::vector<parallel::DocumentFlags> f) {
    DocsHooks h;
    h.forward = [&, f](kernels::ForwardParams&, parallel::Options& o, float*) {
      o.agreed_lengths = pr.lengths;
      o.agreed_documents = f;
    };
    h.backward = [&, f](kernels::BackwardParams&, parallel::Options& o, float*) {
      o.agreed_lengths = pr.lengths;
      o.agreed_documents = f;
    };
    return h;
  };
  for (Schedule s : {Schedule::kRing, Schedule::kAllGather, Schedule::kScan}) {
    SCOPED_TRACE(parallel::schedule_name(s));
    expect_docs_match(pr, r, run_docs_shard(comm, pr, s, agreed(flags)), 2e-5);
  }
  expect_error([&] { run_docs_shard(comm, pr, Schedule::kRing, agreed({})); },
               "agreed_documents is empty");
  std::vector<parallel::DocumentFlags> wrong = flags;
  wrong[r].count += 1;
  expect_error([&] { run_docs_shard(comm, pr, Schedule::kRing, agreed(wrong)); },
               "was agreed with document flags");
  std::vector<parallel::DocumentFlags> broken = flags;
  broken[0].continues = true;  // the whole table is wrong: every rank sees it
  expect_error([&] { run_docs_shard(comm, pr, Schedule::kRing, agreed(broken)); },
               "rank 0 continues a document");
}

// Inputs that break the rules: every rank raises the same error before any exchange.
class DocumentsErrorTest : public MpiTest {
 protected:
  void expect_all_ranks(const DocsHooks& hooks, const std::string& needle) {
    comm::MpiCommunicator comm(MPI_COMM_WORLD, comm::CommOptions{60.0});
    const DocsProblem pr = make_problem(Layout::kSpan3, comm.size(), true, DType::kFloat32, 9);
    for (Schedule s : {Schedule::kRing, Schedule::kAllGather, Schedule::kScan}) {
      SCOPED_TRACE(parallel::schedule_name(s));
      expect_error([&] { run_docs_shard(comm, pr, s, hooks); }, needle);
    }
  }
  static DocsHooks on_forward(std::function<void(kernels::ForwardParams&, float*)> f) {
    DocsHooks h;
    h.forward = [f](kernels::ForwardParams& p, parallel::Options&, float* st) { f(p, st); };
    return h;
  }
};

TEST_F(DocumentsErrorTest, RankZeroContinues) {
  expect_all_ranks(on_forward([&](kernels::ForwardParams& p, float*) {
                     if (world_rank_ == 0) p.docs.continues = true;
                   }),
                   "rank 0 continues a document");
}

TEST_F(DocumentsErrorTest, LastRankDoesNotEnd) {
  expect_all_ranks(on_forward([&](kernels::ForwardParams& p, float*) {
                     if (world_rank_ == world_size_ - 1) p.docs.ends = false;
                   }),
                   "the last rank (" + std::to_string(world_size_ - 1) + ") does not end");
}

TEST_F(DocumentsErrorTest, MismatchedNeighbourFlags) {
  if (world_size_ < 2) GTEST_SKIP() << "needs 2 ranks";
  // span3 on rank 1: the document from rank 0 goes on; rank 1 claims to start a new one.
  expect_all_ranks(on_forward([&](kernels::ForwardParams& p, float*) {
                     if (world_rank_ == 1) p.docs.continues = false;
                   }),
                   "rank 0 does not end its last document but rank 1 does not continue it");
}

TEST_F(DocumentsErrorTest, DocumentsOnSomeRanksOnly) {
  if (world_size_ < 2) GTEST_SKIP() << "needs 2 ranks";
  expect_all_ranks(on_forward([&](kernels::ForwardParams& p, float*) {
                     if (world_rank_ != 1) return;
                     p.docs = kernels::Documents{};
                     p.doc_initial_states = nullptr;
                     p.doc_final_states = nullptr;
                   }),
                   "packed documents (docs) are given on rank(s) 0");
}

TEST_F(DocumentsErrorTest, BatchOfTwo) {
  expect_all_ranks(on_forward([&](kernels::ForwardParams& p, float*) { p.batch = 2; }),
                   "rank " + std::to_string(world_size_ - 1) +
                       " rejected its input: lightring error [rank " +
                       std::to_string(world_size_ - 1) + "]: documents need batch (B) = 1");
}

TEST_F(DocumentsErrorTest, GlobalInitialState) {
  expect_all_ranks(on_forward([&](kernels::ForwardParams& p, float* st) {
                     if (world_rank_ == 0) p.initial_state = st;
                   }),
                   "rank 0 passed initial_state with packed documents");
}

TEST_F(DocumentsErrorTest, GlobalFinalStateGradient) {
  DocsHooks h;
  h.backward = [&](kernels::BackwardParams& p, parallel::Options&, float* st) {
    if (world_rank_ == world_size_ - 1) p.d_final_state = st;
  };
  expect_all_ranks(
      h, "rank " + std::to_string(world_size_ - 1) + " passed d_final_state with packed documents");
}

}  // namespace
}  // namespace lightring::test
