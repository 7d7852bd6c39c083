// The torch boundary: checks torch tensors and converts them to kernels/ params.
//
// Every check throws lightring::Error with a message that names the argument,
// the expected form and what was passed, e.g.
//   "k must have the same [B, H, N] as q (got [2, 4, 7] and [2, 4, 9])".
//
// Layout: q, k are [B, H, N, D] and v, d_o are [B, H, N, E] as torch views
// with any strides whose last dim is contiguous. A [B, N, H, D] tensor is
// passed as its transpose(1, 2) view: the strides describe it, nothing is
// copied. Outputs are allocated in the memory order of the matching input.
// States are [B, H, D, E] fp32 contiguous; decay is [H] fp32 contiguous.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <exception>
#include <optional>
#include <string>

#include "core/error.h"
#include "kernels/attention.h"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define LIGHTRING_STD_OPTIONAL 1
#endif

namespace lightring::csrc {

#ifdef LIGHTRING_STD_OPTIONAL
template <typename T>
using Optional = std::optional<T>;
#else
template <typename T>
using Optional = c10::optional<T>;
#endif

kernels::DType dtype_of(const at::Tensor& t, const char* name);

// Checks q/x [B,H,N,D], k [B,H,N,D] (may be undefined), v/y [B,H,N,E]: one device,
// one dtype, 4-D, matching [B,H,N], contiguous last dim; and decay [H] fp32.
// Fills the shared fields of a kernels::Problem (stream included).
kernels::Problem make_problem(const at::Tensor& q, const char* q_name, const at::Tensor* k,
                              const at::Tensor& v, const char* v_name,
                              const Optional<at::Tensor>& decay, double scale, int64_t block_size);

// Checks that t (4-D, contiguous last dim) has the shape, dtype and device of like.
void check_like(const at::Tensor& t, const char* name, const at::Tensor& like,
                const char* like_name);

// Runs f, rethrowing lightring::Error (and any std::exception) as c10::Error, the
// exception type torch's dispatcher and Python bindings translate (RuntimeError).
template <typename F>
auto torch_errors(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const lightring::Error& e) {
    C10_THROW_ERROR(Error, e.what());
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {
    C10_THROW_ERROR(Error, std::string("lightring: ") + e.what());
  }
}

// A [0] fp32 tensor standing for an output that was not requested.
inline at::Tensor none_tensor(const at::Tensor& like) {
  return at::empty({0}, like.options().dtype(at::kFloat));
}

// Strides in elements of a [B, H, N, dim] view, as the kernels expect them.
kernels::Strides strides_of(const at::Tensor& t);

// Points the params at the (validated) tensors: data pointers and strides.
void bind_tensors(kernels::ForwardParams* p, const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& v, const at::Tensor& o);
void bind_tensors(kernels::BackwardParams* p, const at::Tensor& q, const at::Tensor& k,
                  const at::Tensor& v, const at::Tensor& d_o, const at::Tensor& dq,
                  const at::Tensor& dk, const at::Tensor& dv);

// Checks an optional state argument [B, H, D, E] fp32 contiguous on the device
// of the problem; returns its data pointer or nullptr.
const float* state_ptr(const Optional<at::Tensor>& s, const char* name, const kernels::Problem& p,
                       const at::Device& device);

// A new [B, H, N, dim] tensor with the memory order of `like` ([B,N,H,*] if
// like is a transposed [B,N,H,*] view, [B,H,N,*] otherwise).
at::Tensor empty_rows_like(const at::Tensor& like, int64_t dim);

// A new [B, H, D, E] fp32 state tensor on `device`.
at::Tensor empty_state(const kernels::Problem& p, const at::Device& device);

}  // namespace lightring::csrc
