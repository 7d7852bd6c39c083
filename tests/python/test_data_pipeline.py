"""lightring.data.Pipeline: lightring-train's C++ data pipeline through the extension
(csrc/data_module.cpp). The data-parallel order of csrc/data/loader.h (rank r's j-th sequence
is global sequence start + j·D + r), the position and seek, the validation sequences, and the
C++ errors as ValueError."""
import os

import pytest
import torch

from lightring.data import Pipeline, shard_indices

FORTUNES = "/usr/share/games/fortunes"


def recall(**kw):
    return Pipeline("synthetic-recall", "", 64, 7, recall_keys=8, recall_pairs=4,
                    recall_queries=4, **kw)


def test_dp_order_position_and_seek():
    one = recall()
    ranks = [recall(dp_rank=r, dp_size=2) for r in range(2)]
    whole = one.next(4)
    parts = [p.next(2) for p in ranks]
    for j in range(2):
        for r in range(2):
            assert torch.equal(whole.ids[2 * j + r], parts[r].ids[j])
            assert torch.equal(whole.targets[2 * j + r], parts[r].targets[j])
    assert one.position() == ranks[0].position() == ranks[1].position() == (0, 4)
    later = one.next(3)
    again = recall()
    again.seek(0, 4)
    assert torch.equal(again.next(3).ids, later.ids)
    assert not torch.equal(later.ids[0], whole.ids[0])
    assert whole.ids.dtype == torch.long and whole.ids.shape == (4, 64)
    assert one.vocab_size == 3 + 8 + 8 and one.eos is None and not one.has_documents
    # synthetic-recall: 4 answers per sequence, targets elsewhere ignored (-1)
    assert [len(a) for a in whole.answer_positions] == [4] * 4
    assert int((whole.targets[0] != -1).sum()) == 4
    for pos in whole.answer_positions[0].tolist():
        assert whole.targets[0, pos] >= 3


@pytest.mark.skipif(not os.path.isdir(FORTUNES), reason="needs Debian's fortunes")
def test_fortunes_documents_and_validation():
    p = Pipeline("fortunes", "", 128, 1234, val_fraction=0.01)
    b = p.next(2)
    assert p.has_documents and p.eos == 256 and p.vocab_size == 257
    for r in range(2):
        cu = b.cu_seqlens[r]
        assert cu[0] == 0 and cu[-1] == 128 and bool((cu[1:] > cu[:-1]).all())
    assert p.validation_sequences > 0
    v = p.validation([0, 1])
    assert torch.equal(p.validation([1]).ids[0], v.ids[1])
    assert shard_indices(5, 1, 2) == [1, 3]


def test_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="num_pairs"):
        Pipeline("synthetic-recall", "", 64, 1, recall_keys=4)
    with pytest.raises(ValueError):
        Pipeline("text", str(tmp_path / "missing"), 64, 1)
    with pytest.raises(ValueError, match="unknown data format"):
        Pipeline("nope", "", 64, 1)
    with pytest.raises(ValueError, match="text_split"):
        Pipeline("synthetic-recall", "", 64, 1, text_split="lines")
    p = recall()
    with pytest.raises(ValueError, match="data position"):
        p.seek(0, 1 << 40)
