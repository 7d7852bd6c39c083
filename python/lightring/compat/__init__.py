"""Drop-in entry points with other libraries' conventions.

``lightring.compat.fla``: ``chunk_simple_gla`` and ``chunk_lightning_attn`` with the signatures,
layout, defaults and return values of flash-linear-attention (FLA), computed by lightring.
python/README.md ("Moving from FLA") lists every convention that differs from the native API.
"""
from . import fla  # noqa: F401

__all__ = ["fla"]
