// The lightring NCCL exchange for torch (built only when torch has CUDA and NCCL
// was found: LIGHTRING_NCCL_EXCHANGE, see csrc/CMakeLists.txt).
//
//   torch.classes.lightring.NcclCommunicator(id, rank, size, device, timeout_s)
//       owns one comm::NcclCommunicator (its own CUDA stream and events). `id` is
//       the 128-byte NCCL unique id as a uint8 CPU tensor (the Python layer
//       broadcasts it over the torch process group). The communicator lives as
//       long as the Python object: the last reference destroys it (finalize, or
//       abort when it does not drain within the deadline). abort() tears it down
//       at once.
//   lightring::sp_forward / sp_backward
//       the sequence-parallel forward / backward (docs/algorithm.md §3) of this
//       rank's shard with that communicator (parallel::forward with Options::agreed_lengths),
//       ordered against torch's current CUDA stream: the local passes run on it; the communicator's
//       stream waits for it by event and it waits for the communicator's stream by event. The
//       inputs were agreed by the caller (lightring/agreement.py, once per call), which passes
//       every rank's shard length: these ops do not agree them again, and do not synchronise the
//       host.
//
// Only tensors, numbers, strings and this opaque object cross the boundary;
// no torch ProcessGroup ever reaches C++.
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <memory>
#include <vector>

#include "comm/nccl_communicator.h"
#include "csrc/params.h"
#include "parallel/sequence_parallel.h"

namespace lightring::csrc {

namespace {

// The torch-side holder of one lightring NCCL communicator.
class TorchNcclCommunicator : public torch::CustomClassHolder {
 public:
  TorchNcclCommunicator(at::Tensor id, int64_t rank, int64_t size, int64_t device,
                        double timeout_s) {
    torch_errors([&] {
      LR_CHECK(id.device().is_cpu() && id.scalar_type() == at::kByte && id.dim() == 1,
               "NcclCommunicator: id must be a 1-D uint8 CPU tensor (got ", id.scalar_type(),
               " on ", id.device(), " with ", id.dim(), " dims)");
      const at::Tensor bytes = id.contiguous();
      const comm::NcclUniqueId uid =
          comm::nccl_unique_id_from_bytes(bytes.data_ptr<uint8_t>(), bytes.numel());
      LR_CHECK(device >= 0 && device < static_cast<int64_t>(c10::cuda::device_count()),
               "NcclCommunicator: device ", device, " is not a visible CUDA device");
      comm::CommOptions options;
      options.timeout_s = timeout_s;
      // NcclCommunicator binds its device with cudaSetDevice: restore torch's.
      const c10::DeviceGuard guard(at::Device(at::kCUDA, static_cast<int>(device)));
      comm_ = std::make_unique<comm::NcclCommunicator>(
          uid, static_cast<int>(rank), static_cast<int>(size), static_cast<int>(device), options);
    });
  }

  // The communicator's destructor selects its device: give the thread's back.
  ~TorchNcclCommunicator() override {
    int current = -1;
    const bool known = cudaGetDevice(&current) == cudaSuccess;
    comm_.reset();
    if (known) cudaSetDevice(current);
  }

  comm::NcclCommunicator& get(const at::Tensor& q) {
    LR_CHECK(comm_ != nullptr, "NcclCommunicator: not initialised");
    LR_CHECK(q.is_cuda() && q.device().index() == comm_->device(),
             "the lightring NCCL communicator is bound to cuda:", comm_->device(),
             " but the inputs are on ", q.device(),
             "; call torch.cuda.set_device() before the first sequence-parallel call");
    return *comm_;
  }

  int64_t rank() const { return comm_->rank(); }
  int64_t size() const { return comm_->size(); }
  int64_t device() const { return comm_->device(); }
  bool aborted() const { return comm_->aborted(); }
  void abort() { comm_->abort(); }

 private:
  std::unique_ptr<comm::NcclCommunicator> comm_;
};

using CommPtr = c10::intrusive_ptr<TorchNcclCommunicator>;

// The options of a call whose inputs Python agreed (lightring/agreement.py): the named schedule
// ("auto": the cost model with the default (NCCL) link model, as
// lightring._C.schedule_choice(..., "nccl") resolves it) and every rank's agreed shard length.
parallel::Options agreed_options(const std::string& schedule, at::IntArrayRef lengths) {
  parallel::Options o;
  o.schedule = parallel::parse_schedule(schedule);
  o.agreed_lengths.assign(lengths.begin(), lengths.end());
  return o;
}

// Returns (o, s_in, final_state). initial_state is read on SP rank 0 only (pass
// None elsewhere); final_state is the global one on the last rank when asked,
// [0] elsewhere. s_in = S_in(r) is what sp_backward needs besides the inputs.
std::tuple<at::Tensor, at::Tensor, at::Tensor> sp_forward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const Optional<at::Tensor>& decay, double scale, const Optional<at::Tensor>& initial_state,
    bool output_final_state, int64_t block_size, const CommPtr& comm, const std::string& schedule,
    at::IntArrayRef lengths) {
  return torch_errors([&] {
    comm::NcclCommunicator& c = comm->get(q);
    kernels::ForwardParams p;
    static_cast<kernels::Problem&>(p) = make_problem(q, "q", &k, v, "v", decay, scale, block_size);
    const c10::DeviceGuard guard(q.device());
    const bool last = c.rank() == c.size() - 1;
    at::Tensor o = empty_rows_like(v, p.v_dim);
    at::Tensor s_in = empty_state(p, q.device());
    at::Tensor final_state =
        output_final_state && last ? empty_state(p, q.device()) : none_tensor(q);
    bind_tensors(&p, q, k, v, o);
    p.initial_state = state_ptr(initial_state, "initial_state", p, q.device());
    p.final_state = final_state.numel() > 0 ? final_state.data_ptr<float>() : nullptr;
    parallel::forward(c, p, s_in.data_ptr<float>(), agreed_options(schedule, lengths));
    return std::make_tuple(o, s_in, final_state);
  });
}

// Returns (dq, dk, dv, d_initial_state). s_in from sp_forward; d_final_state is
// the global G on the last rank (None elsewhere); d_initial_state is the global
// dS0 on rank 0 when asked, [0] elsewhere.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sp_backward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& d_o,
    const Optional<at::Tensor>& decay, double scale, const at::Tensor& s_in,
    const Optional<at::Tensor>& d_final_state, bool output_d_initial_state, int64_t block_size,
    const CommPtr& comm, const std::string& schedule, at::IntArrayRef lengths) {
  return torch_errors([&] {
    comm::NcclCommunicator& c = comm->get(q);
    kernels::BackwardParams p;
    static_cast<kernels::Problem&>(p) = make_problem(q, "q", &k, v, "v", decay, scale, block_size);
    check_like(d_o, "d_o", v, "v");
    const c10::DeviceGuard guard(q.device());
    const bool first = c.rank() == 0;
    at::Tensor dq = empty_rows_like(q, p.qk_dim);
    at::Tensor dk = empty_rows_like(k, p.qk_dim);
    at::Tensor dv = empty_rows_like(v, p.v_dim);
    at::Tensor ds0 = output_d_initial_state && first ? empty_state(p, q.device()) : none_tensor(q);
    bind_tensors(&p, q, k, v, d_o, dq, dk, dv);
    p.initial_state = state_ptr(s_in, "s_in", p, q.device());
    p.d_final_state = state_ptr(d_final_state, "d_final_state", p, q.device());
    p.d_initial_state = ds0.numel() > 0 ? ds0.data_ptr<float>() : nullptr;
    parallel::backward(c, p, agreed_options(schedule, lengths));
    return std::make_tuple(dq, dk, dv, ds0);
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(lightring, m) {
  // The class first: the op schemas below name its type.
  m.class_<TorchNcclCommunicator>("NcclCommunicator")
      .def(torch::init<at::Tensor, int64_t, int64_t, int64_t, double>())
      .def("rank", &TorchNcclCommunicator::rank)
      .def("size", &TorchNcclCommunicator::size)
      .def("device", &TorchNcclCommunicator::device)
      .def("aborted", &TorchNcclCommunicator::aborted)
      .def("abort", &TorchNcclCommunicator::abort);
  m.def(
      "sp_forward(Tensor q, Tensor k, Tensor v, Tensor? decay, float scale, "
      "Tensor? initial_state, bool output_final_state, int block_size, "
      "__torch__.torch.classes.lightring.NcclCommunicator comm, str schedule, int[] lengths) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "sp_backward(Tensor q, Tensor k, Tensor v, Tensor d_o, Tensor? decay, float scale, "
      "Tensor s_in, Tensor? d_final_state, bool output_d_initial_state, int block_size, "
      "__torch__.torch.classes.lightring.NcclCommunicator comm, str schedule, int[] lengths) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(lightring, CUDA, m) {
  m.impl("sp_forward", &sp_forward);
  m.impl("sp_backward", &sp_backward);
}

}  // namespace lightring::csrc
