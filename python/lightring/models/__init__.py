"""Models built from lightring.nn: the TransNormerLLM language model of lightring-train.

    from lightring.models import TransNormerLM
    model = TransNormerLM.from_checkpoint("ckpt/latest")   # what lightring-train saved
    new_tokens = model.generate([256] + list(b"Once"), max_new_tokens=100, temperature=0.8)
"""
from .transnormer import (PRESETS, TransNormerConfig, TransNormerLM, ChannelMixer, Block,
                          load_checkpoint)

__all__ = ["PRESETS", "TransNormerConfig", "TransNormerLM", "ChannelMixer", "Block",
           "load_checkpoint"]
