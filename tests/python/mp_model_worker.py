"""lightring.models.TransNormerLM under sequence parallelism, one process per rank, launched by
test_models.py as

    mpirun --allow-run-as-root --oversubscribe -np P python3 mp_model_worker.py

(gloo, CPU). Every rank builds the same seeded model and batches; a few AdamW steps with the
sequence sharded over all P ranks (loss = the shard's summed cross-entropy / the global target
count, gradients summed over the group) must equal the same steps unsharded, computed on every
rank: every loss and every final weight within 1e-5 relative. Once with the rows together, once
with packed documents per row (global cu_seqlens). Prints "PASS model_sp <case> rank <r>".
"""
import copy
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from lightring import distributed as lrd  # noqa: E402
from lightring.models import TransNormerConfig, TransNormerLM  # noqa: E402


def rel(x, ref):
    return ((x - ref).norm() / ref.norm().clamp(min=1e-12)).item()


def train(model, batches, group):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    losses = []
    for ids, targets, cu in batches:
        count = int((targets != -1).sum())
        if group is not None:
            ids, targets = lrd.shard(ids, group, dim=1), lrd.shard(targets, group, dim=1)
        total, _ = model.loss(ids, targets, cu_seqlens=cu, group=group, reduction="sum")
        (total / count).backward()
        total = total.detach().clone()
        if group is not None:
            dist.all_reduce(total, group=group)
            for p in model.parameters():
                dist.all_reduce(p.grad, group=group)
        losses.append(total.item() / count)
        opt.step()
        opt.zero_grad()
    return losses


def main():
    ctx = lrd.init()
    world = dist.group.WORLD
    cfg = TransNormerConfig(vocab_size=53, d_model=32, num_layers=2, num_heads=4, ffn_dim=48,
                            init_std=0.1)
    torch.manual_seed(0)
    base = TransNormerLM(cfg)
    gen = torch.Generator().manual_seed(1)
    n = 37  # odd: unequal shards; document boundaries inside shards and at none of their edges
    cases = {"rows": [], "documents": []}
    ids = torch.randint(0, 53, (2, n), generator=gen)
    targets = torch.randint(0, 53, (2, n), generator=gen)
    targets[1, -3:] = -1
    cu = [torch.tensor([0, 9, 10, 30, n]), torch.tensor([0, 17, n])]
    for _ in range(3):  # the same batch three times: the loss must go down
        cases["rows"].append((ids, targets, None))
        cases["documents"].append((ids, targets, cu))
    for name, batches in cases.items():
        ref_model, sp_model = copy.deepcopy(base), copy.deepcopy(base)
        ref_losses = train(ref_model, batches, None)
        sp_losses = train(sp_model, batches, world)
        for a, b in zip(sp_losses, ref_losses):
            assert abs(a - b) <= 1e-5 * abs(b), (name, sp_losses, ref_losses)
        for (pn, p), q in zip(sp_model.named_parameters(), ref_model.parameters()):
            assert rel(p.detach(), q.detach()) < 1e-5, (name, pn, rel(p.detach(), q.detach()))
        assert ref_losses[-1] < ref_losses[0]  # the steps did train
        print(f"PASS model_sp {name} rank {ctx.rank}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
