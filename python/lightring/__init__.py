"""lightring: sequence-parallel Lightning Attention-2 for PyTorch.

    import lightring
    o = lightring.lightning_attention(q, k, v, lightring.slopes(H))

See python/README.md for installation, the build-tree setup and a
torch.distributed example.
"""
import torch

from . import _ext

_C = _ext.load()

from . import _ops  # noqa: E402

HAS_FAKE_IMPLS = _ops.register_fakes()
__version__ = _C.__version__


def slopes(num_heads):
    """Per-head decay rates of TransNormerLLM / Lightning Attention, [H] fp32 on the cpu:
    s_h = 2^(-8(h+1)/H) for H a power of two (docs/algorithm.md §1)."""
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int (got {num_heads!r})")
    return torch.tensor(_C.slopes(num_heads), dtype=torch.float32)


def cuda_available():
    """Whether this build has the CUDA backend and a GPU is visible."""
    return bool(_C.cuda_compiled() and _C.cuda_available() and _C.torch_cuda)


def info():
    """What this lightring runs on: versions, the backends of the build, the CUDA kernel
    families of the current device (tf32 / mma / wgmma), the NCCL exchange and the deadline."""
    from . import collectives
    return {"version": __version__, "torch": torch.__version__,
            "built_against_torch": _C.torch_version, "cuda_compiled": bool(_C.cuda_compiled()),
            "cuda_available": cuda_available(), "kernel_families": _C.kernel_families(),
            "nccl_exchange": bool(getattr(_C, "nccl_exchange", False)),
            "comm_timeout_s": collectives.timeout_s()}


from .functional import SCHEDULES, lightning_attention  # noqa: E402
from . import collectives, distributed, nn  # noqa: E402
from .collectives import CommError  # noqa: E402

__all__ = ["lightning_attention", "slopes", "cuda_available", "info", "collectives", "distributed", "nn",
           "SCHEDULES", "CommError"]
