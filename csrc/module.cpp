// The Python module half of lightring._C: non-tensor helpers, written against the
// CPython C API rather than pybind11, so that this library shares no pybind11
// internals with torch's own bindings (their pybind11 versions differ between
// torch releases). Loading the library also registers the lightring:: ops
// (csrc/ops.cpp).
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <exception>
#include <vector>

#include "core/error.h"
#include "kernels/attention.h"
#include "parallel/sequence_parallel.h"
#ifdef LIGHTRING_NCCL_EXCHANGE
#include "comm/nccl_communicator.h"
#endif

namespace kernels = lightring::kernels;
namespace parallel = lightring::parallel;

namespace {

// Runs f, turning a C++ exception into a Python RuntimeError.
template <typename F>
PyObject* guarded(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

PyObject* py_slopes(PyObject*, PyObject* args) {
  long long heads = 0;
  if (!PyArg_ParseTuple(args, "L", &heads)) return nullptr;
  return guarded([&]() -> PyObject* {
    std::vector<float> out(heads > 0 ? heads : 0);
    kernels::slopes(heads, out.data());
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(out.size()));
    if (list == nullptr) return nullptr;
    for (size_t i = 0; i < out.size(); ++i) {
      PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), PyFloat_FromDouble(out[i]));
    }
    return list;
  });
}

PyObject* py_default_block_size(PyObject*, PyObject* args) {
  int cuda = 0;
  long long qk_dim = 0, v_dim = 0;
  if (!PyArg_ParseTuple(args, "pLL", &cuda, &qk_dim, &v_dim)) return nullptr;
  return guarded([&] {
    const auto device = cuda ? kernels::Device::kCuda : kernels::Device::kCpu;
    return PyLong_FromLong(kernels::default_block_size(device, qk_dim, v_dim));
  });
}

PyObject* py_cuda_compiled(PyObject*, PyObject*) {
  return PyBool_FromLong(kernels::cuda_compiled());
}

PyObject* py_cuda_available(PyObject*, PyObject*) {
  return guarded([] { return PyBool_FromLong(kernels::cuda_available()); });
}

PyObject* py_set_error_rank(PyObject*, PyObject* args) {
  int rank = -1;
  if (!PyArg_ParseTuple(args, "i", &rank)) return nullptr;
  lightring::set_error_rank(rank);
  Py_RETURN_NONE;
}

// nccl_unique_id() -> bytes: a fresh 128-byte NCCL unique id (ncclGetUniqueId),
// made on one rank and broadcast to the others (lightring/nccl_exchange.py).
PyObject* py_nccl_unique_id(PyObject*, PyObject*) {
#ifdef LIGHTRING_NCCL_EXCHANGE
  return guarded([]() -> PyObject* {
    const lightring::comm::NcclUniqueId id = lightring::comm::nccl_unique_id();
    return PyBytes_FromStringAndSize(reinterpret_cast<const char*>(id.data()),
                                     static_cast<Py_ssize_t>(id.size()));
  });
#else
  PyErr_SetString(PyExc_RuntimeError,
                  "lightring was built without the NCCL exchange (needs NCCL and a CUDA build "
                  "of torch)");
  return nullptr;
#endif
}

// The link model of the schedule cost model for a transport, as lightring-bench sets it
// for the same transport (launch/bench_options.cpp): "nccl" is --backend cuda (the
// parallel::LinkModel defaults), "mpi" and "gloo" are --backend cpu (host messages and a
// host combine). tests/python/test_schedule.py compares both with lightring-bench --model.
parallel::LinkModel link_for(const std::string& transport) {
  parallel::LinkModel link;
  if (transport == "nccl") return link;
  LR_CHECK(transport == "gloo" || transport == "mpi",
           "transport must be one of nccl, gloo, mpi (got '", transport, "')");
  link.latency_us = 1.5;
  link.bandwidth_Bpus = 5e3;
  link.combine_Bpus = 5e3;
  return link;
}

// schedule_choice(P, B, H, D, E, local_len, dtype, transport) -> str: the schedule
// parallel::choose_schedule picks for "auto" (parallel/schedule.cpp) over P ranks for
// [B, H, D, E] fp32 state messages, as lightring-bench does for the same P, sizes and
// transport. The model depends on P, the message size and the link only; the local
// length and the dtype are validated (states are fp32 whatever the input dtype).
PyObject* py_schedule_choice(PyObject*, PyObject* args) {
  int ranks = 0;
  long long batch = 0, heads = 0, qk_dim = 0, v_dim = 0, local_len = 0;
  const char* dtype = nullptr;
  const char* transport = nullptr;
  if (!PyArg_ParseTuple(args, "iLLLLLss", &ranks, &batch, &heads, &qk_dim, &v_dim, &local_len,
                        &dtype, &transport))
    return nullptr;
  return guarded([&] {
    LR_CHECK(ranks >= 1, "schedule_choice: P must be >= 1 (got ", ranks, ")");
    LR_CHECK(batch >= 1 && heads >= 1 && qk_dim >= 1 && v_dim >= 1 && local_len >= 1,
             "schedule_choice: B, H, D, E and the local length must be >= 1 (got ", batch, ", ",
             heads, ", ", qk_dim, ", ", v_dim, ", ", local_len, ")");
    kernels::parse_dtype(dtype);
    const size_t bytes = static_cast<size_t>(batch * heads * qk_dim * v_dim) * sizeof(float);
    const parallel::Schedule s =
        parallel::choose_schedule(parallel::Schedule::kAuto, ranks, bytes, link_for(transport));
    return PyUnicode_FromString(parallel::schedule_name(s));
  });
}

PyObject* py_kernel_families(PyObject*, PyObject*) {
  return guarded([]() -> PyObject* {
    return PyUnicode_FromString(lightring::kernels::kernel_families().c_str());
  });
}

// set_documents_path(name): KernelTuning::documents_path ("auto" or "pieces"; A/B benchmarks of
// packed documents); returns the previous setting's name.
PyObject* py_set_documents_path(PyObject*, PyObject* args) {
  const char* name = nullptr;
  if (!PyArg_ParseTuple(args, "s", &name)) return nullptr;
  return guarded([&]() -> PyObject* {
    using Path = kernels::KernelTuning::DocumentsPath;
    const std::string n = name;
    LR_CHECK(n == "auto" || n == "pieces", "set_documents_path: expected 'auto' or 'pieces' (got '",
             n, "')");
    kernels::KernelTuning t = kernels::kernel_tuning();
    const Path was = t.documents_path;
    t.documents_path = n == "auto" ? Path::kAuto : Path::kPieces;
    kernels::set_kernel_tuning(t);
    return PyUnicode_FromString(was == Path::kAuto ? "auto" : "pieces");
  });
}

PyMethodDef kMethods[] = {
    {"kernel_families", py_kernel_families, METH_NOARGS,
     "kernel_families() -> str: the CUDA kernel families this device runs."},
    {"set_documents_path", py_set_documents_path, METH_VARARGS,
     "set_documents_path(name) -> str: where packed documents run: 'auto' (inside the block "
     "loops where the backend has them, the default) or 'pieces' (piece by piece, for A/B "
     "benchmarks); returns the previous setting."},
    {"schedule_choice", py_schedule_choice, METH_VARARGS,
     "schedule_choice(P, B, H, D, E, local_len, dtype, transport) -> str: the schedule the C++ "
     "cost model picks for 'auto' (transport: nccl, gloo or mpi)."},
    {"slopes", py_slopes, METH_VARARGS,
     "slopes(num_heads) -> list[float]: TransNormerLLM per-head decay rates (algorithm.md §1)."},
    {"default_block_size", py_default_block_size, METH_VARARGS,
     "default_block_size(cuda, qk_dim, v_dim) -> int"},
    {"cuda_compiled", py_cuda_compiled, METH_NOARGS, "Whether the CUDA backend was built."},
    {"cuda_available", py_cuda_available, METH_NOARGS, "Whether the CUDA backend sees a GPU."},
    {"nccl_unique_id", py_nccl_unique_id, METH_NOARGS,
     "nccl_unique_id() -> bytes: a new 128-byte NCCL unique id (NCCL exchange builds only)."},
    {"set_error_rank", py_set_error_rank, METH_VARARGS,
     "set_error_rank(rank): rank shown in lightring error messages (-1: none)."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_C",
                       "lightring native extension: registers "
                       "torch.ops.lightring.{forward,backward,local_state}",
                       -1, kMethods};

}  // namespace

// csrc/data_module.cpp: the data pipeline's functions (data_open, data_next, ...).
int lightring_add_data_functions(PyObject* module);

PyMODINIT_FUNC PyInit__C() {
  PyObject* m = PyModule_Create(&kModule);
  if (m == nullptr) return nullptr;
  if (lightring_add_data_functions(m) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  // The torch release this library was compiled against: lightring/_ext.py refuses
  // to run it under another one (the C++ ABI differs between releases).
  const bool ok =
      PyModule_AddStringConstant(m, "__version__", LIGHTRING_VERSION) == 0 &&
      PyModule_AddStringConstant(m, "torch_version", LIGHTRING_TORCH_BUILT_VERSION) == 0 &&
#ifdef LIGHTRING_TORCH_CUDA
      PyModule_AddObject(m, "torch_cuda", PyBool_FromLong(1)) == 0 &&
#else
      PyModule_AddObject(m, "torch_cuda", PyBool_FromLong(0)) == 0 &&
#endif
  // Whether torch.classes.lightring.NcclCommunicator and the sp_forward /
  // sp_backward ops exist (csrc/nccl_ops.cpp).
#ifdef LIGHTRING_NCCL_EXCHANGE
      PyModule_AddObject(m, "nccl_exchange", PyBool_FromLong(1)) == 0;
#else
      PyModule_AddObject(m, "nccl_exchange", PyBool_FromLong(0)) == 0;
#endif
  if (!ok) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
