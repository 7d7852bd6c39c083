// Sums, error agreement and the replica check of launch/train_dist.h.
#include "launch/train_dist.h"

#include <chrono>
#include <cstring>
#include <sstream>
#include <thread>

#include "core/error.h"

namespace lightring::launch {

namespace {

void all_reduce(comm::MpiCommunicator& comm, void* data, size_t count, MPI_Datatype type,
                const char* what) {
  LR_CHECK(!comm.aborted(), "all-reduce of ", what, " on an aborted communicator");
  LR_CHECK(count <= static_cast<size_t>(INT32_MAX), "all-reduce of ", what, ": ", count,
           " values is more than one MPI call takes");
  if (comm.size() == 1 || count == 0) return;
  MPI_Request request;
  MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), type, MPI_SUM, comm.handle(),
                 &request);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(comm.timeout_s());
  int done = 0;
  for (int polls = 0;; ++polls) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    comm::check_peer_failures();
    if (Clock::now() > deadline) {
      comm.abort();
      LR_THROW_COMM("all-reduce of ", what, " over ", comm.size(), " ranks: no answer within ",
                    comm.timeout_s(), " s (--timeout); a rank is stopped, dead or far behind");
    }
    // Oversubscribed CPU ranks: give the core to the peers after the first quick polls.
    if (polls > 100) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace

void all_reduce_sum(comm::MpiCommunicator& comm, float* data, size_t count, const char* what) {
  all_reduce(comm, data, count, MPI_FLOAT, what);
}

void all_reduce_sum(comm::MpiCommunicator& comm, double* data, size_t count, const char* what) {
  all_reduce(comm, data, count, MPI_DOUBLE, what);
}

void agree_on_errors(comm::MpiCommunicator& comm, const std::string& my_error,
                     const std::string& context) {
  const std::vector<std::string> all = comm::all_gather_strings(comm, my_error);
  if (!my_error.empty()) throw Error(context + ": " + my_error);
  for (size_t r = 0; r < all.size(); ++r) {
    if (!all[r].empty()) {
      throw Error(context + ": rank " + std::to_string(r) + " failed: " + all[r]);
    }
  }
}

std::vector<int64_t> tensors_digest(const std::vector<torch::Tensor>& tensors) {
  // Two FNV-1a 64-bit streams with different offsets, over every tensor's bytes and size.
  uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
  const uint64_t prime = 0x100000001b3ull;
  auto mix = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      a = (a ^ p[i]) * prime;
      b = (b ^ p[n - 1 - i]) * prime;
    }
  };
  for (const torch::Tensor& t : tensors) {
    const torch::Tensor c = t.detach().contiguous().cpu();
    const int64_t numel = c.numel();
    mix(reinterpret_cast<const uint8_t*>(&numel), sizeof(numel));
    mix(static_cast<const uint8_t*>(c.data_ptr()), c.numel() * c.element_size());
  }
  return {static_cast<int64_t>(a), static_cast<int64_t>(b)};
}

void check_identical(comm::MpiCommunicator& comm, const std::vector<torch::Tensor>& tensors,
                     const char* what, const char* when) {
  const std::vector<int64_t> mine = tensors_digest(tensors);
  std::vector<int64_t> all(mine.size() * comm.size());
  comm.all_gather_host(mine.data(), all.data(), mine.size());
  std::ostringstream differ;
  for (int r = 1; r < comm.size(); ++r) {
    if (std::memcmp(&all[r * mine.size()], all.data(), mine.size() * sizeof(int64_t)) != 0)
      differ << " " << r;
  }
  LR_CHECK(differ.tellp() == 0, "the ", what, " differ between ranks ", when, ": ranks",
           differ.str(),
           " do not hold rank 0's values (same --seed and checkpoint on every rank?)");
}

parallel::NodeLayout check_sp_placement(comm::MpiCommunicator& world, int sp_size,
                                        bool allow_across_nodes) {
  parallel::NodeLayout nodes = parallel::discover_nodes(world);
  if (allow_across_nodes) return nodes;
  const std::string error = parallel::sp_placement_error(nodes, sp_size);
  LR_CHECK(error.empty(), error);
  return nodes;
}

parallel::LinkModel sp_group_link(const parallel::NodeLayout& nodes,
                                  const comm::GroupLayout& groups, parallel::LinkModel link) {
  // SP group dp_rank holds the world ranks [dp_rank·S, dp_rank·S + S) (comm/layout.h).
  link.span = parallel::group_span(nodes, groups.dp_rank * groups.sp_size, groups.sp_size);
  return link;
}

}  // namespace lightring::launch
