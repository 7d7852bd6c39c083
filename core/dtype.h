// Element types of q, k, v, o and their gradients. States are always fp32.
//
// Part of core/, the base layer: kernels/, comm/ and parallel/ all name tensors
// by this type; kernels/attention.h re-exports it as kernels::DType.
#pragma once

#include <cstddef>
#include <string>

namespace lightring {

enum class DType { kFloat32, kBFloat16, kFloat16 };

inline size_t dtype_size(DType t) {
  return t == DType::kFloat32 ? 4 : 2;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "fp32";
    case DType::kBFloat16:
      return "bf16";
    case DType::kFloat16:
      return "fp16";
  }
  return "?";
}

// Parses "fp32"/"float32", "bf16"/"bfloat16", "fp16"/"float16"/"half"; throws otherwise.
DType parse_dtype(const std::string& name);

}  // namespace lightring
