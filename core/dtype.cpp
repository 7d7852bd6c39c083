#include "core/dtype.h"

#include "core/error.h"

namespace lightring {

DType parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32" || name == "float") return DType::kFloat32;
  if (name == "bf16" || name == "bfloat16") return DType::kBFloat16;
  if (name == "fp16" || name == "float16" || name == "half") return DType::kFloat16;
  LR_THROW("dtype must be one of fp32, bf16, fp16 (got '", name, "')");
}

}  // namespace lightring
