// The bucketed gradient all-reduce of launch/train_reduce.h.
#include "launch/train_reduce.h"

#include <chrono>
#include <thread>

#include "core/error.h"

namespace lightring::launch {

GradientReducer::GradientReducer(comm::MpiCommunicator& world, std::vector<torch::Tensor> params,
                                 double bucket_bytes)
    : world_(world), params_(std::move(params)) {
  bucket_of_.resize(params_.size());
  slot_of_.resize(params_.size());
  seen_.assign(params_.size(), 0);
  double bytes = 0;
  for (size_t i = params_.size(); i-- > 0;) {
    const torch::Tensor& p = params_[i];
    LR_CHECK(p.scalar_type() == torch::kFloat, "GradientReducer: fp32 parameters only");
    if (buckets_.empty() || (bucket_bytes > 0 && bytes >= bucket_bytes)) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    bucket_of_[i] = buckets_.size() - 1;
    slot_of_[i] = b.params.size();
    b.offsets.push_back(b.params.empty() ? 0 : b.offsets.back() + params_[b.params.back()].numel());
    b.params.push_back(i);
    bytes += static_cast<double>(p.numel()) * 4;
  }
  for (Bucket& b : buckets_)
    b.flat = torch::zeros({b.offsets.back() + params_[b.params.back()].numel()}, torch::kFloat);
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].register_hook([this, i](const torch::Tensor& grad) { on_grad(i, grad); });
  }
}

void GradientReducer::begin() {
  for (Bucket& b : buckets_) {
    LR_CHECK(!b.posted, "GradientReducer::begin while a reduction is in flight");
    b.ready = 0;
  }
  seen_.assign(params_.size(), 0);
  active_ = true;
}

void GradientReducer::on_grad(size_t i, const torch::Tensor& grad) {
  if (!active_) return;
  LR_CHECK(!seen_[i], "GradientReducer: parameter ", i, " got two gradients in one backward");
  seen_[i] = 1;
  Bucket& b = buckets_[bucket_of_[i]];
  b.flat.narrow(0, b.offsets[slot_of_[i]], params_[i].numel()).copy_(grad.reshape({-1}));
  if (++b.ready == b.params.size()) post(b);
  progress();
}

void GradientReducer::post(Bucket& b) {
  b.posted = true;
  if (world_.size() == 1) return;
  LR_CHECK(!world_.aborted(), "gradient all-reduce on an aborted communicator");
  MPI_Iallreduce(MPI_IN_PLACE, b.flat.data_ptr<float>(), static_cast<int>(b.flat.numel()),
                 MPI_FLOAT, MPI_SUM, world_.handle(), &b.request);
}

void GradientReducer::progress() {
  for (Bucket& b : buckets_) {
    if (b.request == MPI_REQUEST_NULL) continue;
    int done = 0;
    MPI_Test(&b.request, &done, MPI_STATUS_IGNORE);  // sets the request to MPI_REQUEST_NULL
  }
}

void GradientReducer::finish() {
  active_ = false;
  for (size_t i = 0; i < params_.size(); ++i)
    LR_CHECK(seen_[i], "GradientReducer: parameter ", i, " got no gradient in this backward");
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(world_.timeout_s());
  for (int polls = 0;; ++polls) {
    progress();
    bool pending = false;
    for (const Bucket& b : buckets_) pending = pending || b.request != MPI_REQUEST_NULL;
    if (!pending) break;
    comm::check_peer_failures();
    if (Clock::now() > deadline) {
      world_.abort();
      LR_THROW_COMM("gradient all-reduce over ", world_.size(), " ranks: no answer within ",
                    world_.timeout_s(), " s (--timeout); a rank is stopped, dead or far behind");
    }
    if (polls > 100) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  for (Bucket& b : buckets_) {
    b.posted = false;
    for (size_t s = 0; s < b.params.size(); ++s) {
      torch::Tensor& p = params_[b.params[s]];
      const torch::Tensor sum = b.flat.narrow(0, b.offsets[s], p.numel()).view_as(p);
      if (p.grad().defined()) {
        p.mutable_grad().copy_(sum);
      } else {
        p.mutable_grad() = sum.clone();
      }
    }
  }
}

}  // namespace lightring::launch
