// The pybind11 half of lightring._C: non-tensor helpers only (no torch object
// crosses here, so this file does not depend on torch's Python ABI). Loading
// the library also registers the lightring:: ops (csrc/ops.cpp).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "kernels/attention.h"
#include "kernels/error.h"

namespace py = pybind11;
namespace kernels = lightring::kernels;

PYBIND11_MODULE(_C, m) {
  m.doc() =
      "lightring native extension: registers torch.ops.lightring.{forward,backward,local_state}";
  m.attr("__version__") = LIGHTRING_VERSION;
  // The torch release this library was compiled against; lightring/__init__.py
  // refuses to run it under another one (the C++ ABI differs between releases).
  m.attr("torch_version") = LIGHTRING_TORCH_BUILT_VERSION;
#ifdef LIGHTRING_TORCH_CUDA
  m.attr("torch_cuda") = true;
#else
  m.attr("torch_cuda") = false;
#endif

  m.def(
      "slopes",
      [](int64_t heads) {
        std::vector<float> out(heads > 0 ? heads : 0);
        kernels::slopes(heads, out.data());
        return out;
      },
      py::arg("num_heads"), "Per-head decay rates of TransNormerLLM (docs/algorithm.md §1).");
  m.def(
      "default_block_size",
      [](bool cuda, int64_t qk_dim, int64_t v_dim) {
        return kernels::default_block_size(cuda ? kernels::Device::kCuda : kernels::Device::kCpu,
                                           qk_dim, v_dim);
      },
      py::arg("cuda"), py::arg("qk_dim"), py::arg("v_dim"));
  m.def("cuda_compiled", &kernels::cuda_compiled, "Whether the CUDA backend was built.");
  m.def("cuda_available", &kernels::cuda_available, "Whether the CUDA backend sees a GPU.");
  m.def("set_error_rank", &lightring::set_error_rank, py::arg("rank"),
        "Rank shown in lightring error messages of this process (-1: none).");

  py::register_exception<lightring::Error>(m, "Error", PyExc_RuntimeError);
}
