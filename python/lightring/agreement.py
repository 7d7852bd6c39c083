"""The agreement that opens every sequence-parallel call: once in the forward, once in the
backward, whichever exchange moves the states.

Every rank all-gathers one small fixed-size record over the group (lightring.collectives:
tagged point-to-point messages with a deadline): which call this is (forward / backward),
whether its own inputs were valid, B, H, D, E, dtype, layout, which global states it passed,
schedule, scale, block size, a 128-bit digest of the exact decay bytes, the exchange, the
number of documents and a digest of the global cu_seqlens (packed documents), and its shard
length. Every rank evaluates the same gathered table, so an invalid input on one rank or
a mismatch between ranks raises on every rank, with the same message, before any message whose
size depends on the inputs; a rank whose own input was rejected raises its own error, the
others name it and its reason. The agreed shard lengths are returned (the C++ ops of the
"lightring" exchange need them, and do not agree the inputs again: parallel::Options::agreed_lengths).
"""
import hashlib
import struct

import torch

from . import collectives, functional
from .collectives import TAG_AGREE, TAG_AGREE_TEXT

_DTYPES = (None, torch.float32, torch.bfloat16, torch.float16)
CALLS = ("forward", "backward")
EXCHANGES = ("torch", "lightring")
# The agreement record: (field, name in messages, how to print a value); None: not compared.
_FIELDS = (
    ("call", "call", lambda v: CALLS[v]),
    ("ok", "validity", str),
    ("batch", "batch size B", str),
    ("heads", "number of heads H", str),
    ("d", "head dim D", str),
    ("e", "value dim E", str),
    ("dtype", "dtype", lambda v: str(_DTYPES[v]).replace("torch.", "")),
    ("layout", "layout", lambda v: repr(functional._LAYOUTS[v])),
    ("s0", "initial_state (given or None)", lambda v: "given" if v else "None"),
    ("final", "output_final_state", lambda v: str(bool(v))),
    ("schedule", "schedule", lambda v: repr(functional.SCHEDULES[v])),
    ("scale", "scale", lambda v: f"{struct.unpack('<d', struct.pack('<q', v))[0]:g}"),
    ("block_size", "block_size", str),
    ("decay", "decay (given or None)", lambda v: "given" if v else "None"),
    ("digest0", "decay values", lambda v: f"digest {v & (2**64 - 1):016x}"),
    ("digest1", "decay values", lambda v: f"digest {v & (2**64 - 1):016x}"),
    ("exchange", "exchange", lambda v: repr(EXCHANGES[v])),
    ("docs", "cu_seqlens (given or None)", lambda v: "given" if v else "None"),
    ("num_docs", "number of documents len(cu_seqlens) - 1", str),
    ("cu0", "cu_seqlens values (the global offsets)", lambda v: f"digest {v & (2**64 - 1):016x}"),
    ("cu1", "cu_seqlens values (the global offsets)", lambda v: f"digest {v & (2**64 - 1):016x}"),
    ("length", None, str),  # the shard length: may differ between ranks
)


def _decay_digest(decay):
    """(error, two int64 words of a 128-bit digest of the exact bytes of decay).

    The values are read on the host once, here, for the digest; they are checked on the
    same copy (finite, >= 0), so that a bad rate on a CUDA tensor fails every rank through
    the agreement rather than one rank inside its local pass."""
    if decay is None:
        return None, (0, 0)
    host = decay.detach().to("cpu", torch.float32).contiguous()
    if not bool(torch.isfinite(host).all() and (host >= 0).all()):
        return ValueError(f"decay must be finite and >= 0 (got {host.tolist()})"), (0, 0)
    data = host.numpy().tobytes()
    return None, struct.unpack("<qq", hashlib.blake2b(data, digest_size=16).digest())


def agree(ex, call, error, q=None, v=None, decay=None, has_s0=False, layout="bhnd", scale=1.0,
          block_size=0, output_final_state=False, docs=None):
    """One agreement round over ex's group (ex: an exchange of lightring.sequence_parallel).
    docs: None, or (number of documents, the two digest words of the global cu_seqlens).
    `error` is this rank's own validation error (None when its inputs are valid): it is raised
    on this rank, and its text reported on every other rank. Returns every rank's shard
    length, in group-rank order."""
    record = dict.fromkeys((f for f, _, _ in _FIELDS), 0)
    if error is None:
        error, digest = _decay_digest(decay)
    record.update(call=CALLS.index(call), ok=int(error is None),
                  exchange=EXCHANGES.index(ex.name))
    if error is None:
        h_dim, n_dim = (1, 2) if layout == "bhnd" else (2, 1)
        record.update(batch=q.shape[0], heads=q.shape[h_dim], d=q.shape[3], e=v.shape[3],
                      dtype=_DTYPES.index(q.dtype), layout=functional._LAYOUTS.index(layout),
                      s0=int(has_s0), final=int(bool(output_final_state)),
                      schedule=functional.SCHEDULES.index(ex.requested),
                      scale=struct.unpack("<q", struct.pack("<d", float(scale)))[0],
                      block_size=block_size, decay=int(decay is not None),
                      digest0=digest[0], digest1=digest[1], length=q.shape[n_dim])
        if docs is not None:
            record.update(docs=1, num_docs=docs[0], cu0=docs[1], cu1=docs[2])
    mine = torch.tensor([record[f] for f, _, _ in _FIELDS], dtype=torch.int64,
                        device=ex.device)
    what = f"the agreement of a sequence-parallel {call}"
    table = [r.cpu().tolist() for r in collectives.all_gather(ex.peers, mine, TAG_AGREE, what)]
    where = f"lightring: sequence-parallel {call} over {ex.size} ranks"
    for r, row in enumerate(table):
        if row[0] != table[ex.rank][0]:
            raise RuntimeError(
                f"{where}: group rank {r} is in its {CALLS[row[0]]} while group rank "
                f"{ex.rank} is in its {call}: every rank must run forward and then "
                "backward for every call (a rank skipped a backward, or ran one more "
                "forward)")
    bad = [r for r in range(ex.size) if table[r][1] != 1]
    if bad:
        texts = collectives.all_gather_bytes(
            ex.peers, b"" if error is None else str(error).encode(), TAG_AGREE_TEXT, what)
        if error is not None:
            raise error
        reasons = "".join(f"\n  group rank {r} rejected its inputs: {texts[r].decode()}"
                          for r in bad)
        raise ValueError(f"{where}: nothing was run:{reasons}")
    for col, (_, name, show) in enumerate(_FIELDS):
        column = [row[col] for row in table]
        if name is None or all(c == column[0] for c in column):
            continue
        values = "; ".join(f"group rank {r}: {show(c)}" for r, c in enumerate(column))
        raise ValueError(f"every rank of the sequence-parallel group must pass the same "
                         f"{name} to lightning_attention ({values})")
    return [row[-1] for row in table]
