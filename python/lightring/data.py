"""lightring-train's data pipeline (csrc/data, docs/data.md) from Python, through the extension
(csrc/data_module.cpp): the same formats, packing, shuffling, validation split and data-parallel
order as the C++ driver, so `python -m lightring.train` and `lightring-train` read the same
sequences for the same --data / --seq-len / --seed / --dp.

    pipe = Pipeline("fortunes", "", seq_len=256, seed=1234, dp_rank=0, dp_size=1)
    batch = pipe.next(4)          # this DP rank's next 4 sequences
    batch.ids, batch.targets      # [4, 256] int64 (targets -1 where nothing counts)
    batch.cu_seqlens              # per row, the packed documents' offsets (int64)
    pipe.position(); pipe.seek(epoch, sequence)
"""
import collections

import torch

from . import _ext

Batch = collections.namedtuple("Batch", "ids targets cu_seqlens answer_positions "
                                        "answer_key_positions")

FORMATS = ("synthetic-recall", "fortunes", "text", "tokens", "megatron")


def _ints(raw):
    if not raw:
        return torch.zeros(0, dtype=torch.long)
    return torch.frombuffer(bytearray(raw), dtype=torch.int32).to(torch.long)


def _batch(items):
    rows = [[_ints(x) for x in item] for item in items]
    return Batch(torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]),
                 [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows])


class Pipeline:
    """One DP rank's view of a lightring-train dataset (csrc/data/dataset.h open_dataset and a
    csrc/data/loader.h ShardedLoader). Options are those of lightring-train's data flags:
    val_fraction, text_split ('file' | 'block'), token_dtype ('uint16' | 'uint32'), eos (-1:
    none), vocab (0: inferred), recall_keys, recall_pairs, recall_queries. Errors (a missing
    path, an empty corpus, a bad option) raise ValueError with the C++ message."""

    def __init__(self, format, path, seq_len, seed, dp_rank=0, dp_size=1, **options):
        ext = _ext.load()
        if not hasattr(ext, "data_open"):
            raise ImportError("this build of lightring._C has no data pipeline (rebuild the "
                              "lightring_python target)")
        self._ext = ext
        self._h = ext.data_open(format, path or "", int(seq_len), int(seed), int(dp_rank),
                                int(dp_size), **options)
        info = ext.data_info(self._h)
        self.vocab_size = info["vocab_size"]
        self.eos = info["eos"]
        self.description = info["description"]
        self.has_documents = info["documents"]
        self.train_sequences = info["train_sequences"]
        self.validation_sequences = info["validation_sequences"]

    def next(self, batch):
        """This rank's next `batch` sequences (global sequence start + j·dp_size + dp_rank)."""
        return _batch(self._ext.data_next(self._h, int(batch)))

    def validation(self, indices):
        return _batch([self._ext.data_validation(self._h, int(i)) for i in indices])

    def position(self):
        """(epoch, sequence): where the next batch starts, the same on every rank."""
        return self._ext.data_position(self._h)

    def seek(self, epoch, sequence):
        self._ext.data_seek(self._h, int(epoch), int(sequence))


def shard_indices(n, rank, size):
    """The validation indices rank r of `size` evaluates (csrc/data/loader.h shard_indices)."""
    return list(range(rank, n, size))
