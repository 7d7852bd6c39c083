"""Bounded communication over torch.distributed groups: the no-hang guarantee in Python.

Every message lightring sends over a torch.distributed group goes through this module. Each one
is a point-to-point ``isend`` / ``irecv`` with a tag per kind of message, waited for against one
deadline, ``timeout_s()``; all-gathers, broadcasts and reductions are built from such messages.
Two reasons:

* a missing rank can be named: the receive that did not complete says who;
* nothing is left running after an error. A gloo *collective* whose ``Work.wait(timeout)``
  expires keeps its worker thread blocked until the group's own timeout (30 minutes by default),
  and the process cannot exit before; a point-to-point receive has no such thread.

On a deadline, or when a peer closed its connection, ``CommError`` (a ``RuntimeError``) names
the peers (group and global ranks), what this rank was doing and how long it waited. The group
is then marked broken: its pending receives may still be written by a late peer, so their
buffers are kept alive, and every later lightring call on the group raises at once.

The deadline, in this order: ``set_timeout()`` / ``lightring.distributed.init(timeout=...)``,
else the environment variable ``LIGHTRING_COMM_TIMEOUT_S`` (a positive number of seconds;
anything else is an error), else 300 s. lightring's own NCCL communicator
(``exchange="lightring"``) is created with the same deadline.
"""
import datetime
import math
import os
import time

import torch
import torch.distributed as dist

ENV = "LIGHTRING_COMM_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0

# Tags: one per kind of message, so that messages of different steps never match each other.
TAG_AGREE = 11      # the agreement record of a forward or a backward (one tag for both)
TAG_AGREE_TEXT = 12  # the error texts exchanged when a rank rejected its inputs
TAG_FORWARD = 13    # the forward exchange of states
TAG_BACKWARD = 14   # the backward exchange of state gradients
TAG_FINAL = 15      # the global final state, from the last rank
TAG_FINAL_GRAD = 16  # the final-state gradients, to the last rank
TAG_GATHER = 17     # lightring.distributed.gather
TAG_NCCL_ID = 18    # the unique id of lightring's NCCL communicator

_override = None
_broken = {}    # id(group) -> the first CommError on it
_orphans = []   # buffers of receives that never completed (a late peer may still write them)


class CommError(RuntimeError):
    """A peer did not answer within the deadline, closed its connection, or the group failed
    earlier. The message names the peers and what this rank was doing."""


def _parse_seconds(value, source):
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{source} must be a positive number of seconds, e.g. 60 or 0.5 "
                         f"(got {value!r})")
    return seconds


def set_timeout(seconds):
    """Sets the deadline of every wait (seconds or a timedelta); None goes back to
    $LIGHTRING_COMM_TIMEOUT_S or the default."""
    global _override
    _override = None if seconds is None else _parse_seconds(seconds, "timeout")


def timeout_s():
    """The deadline of every wait for a peer, in seconds (see the module docstring)."""
    if _override is not None:
        return _override
    value = os.environ.get(ENV)
    if value is None:
        return DEFAULT_TIMEOUT_S
    return _parse_seconds(value, f"${ENV}")


class Peers:
    """The ranks of a group in group-rank order, and how to name them."""

    def __init__(self, group, ranks):
        self.group = group
        self.ranks = ranks  # global ranks in group-rank order
        self.rank = dist.get_rank(group)
        self.size = len(ranks)

    def name(self, group_rank):
        g = self.ranks[group_rank]
        return f"rank {group_rank}" + (f" (global rank {g})" if g != group_rank else "")


def check_usable(group):
    """Raises the group's first failure again, if it had one."""
    first = _broken.get(id(group))
    if first is not None:
        raise CommError(f"lightring: this process group failed earlier and cannot be used by "
                        f"lightring any more (a late message of the failed step could be "
                        f"delivered to the next one); create a new group. The first failure: "
                        f"{first}")


def exchange(peers, sends, recvs, tag, what):
    """Posts every send (group rank, tensor) and receive (group rank, tensor) at once, then waits
    for all of them against the deadline. Raises CommError naming the ranks that did not answer."""
    check_usable(peers.group)
    posted = []
    for peer, tensor in recvs:
        posted.append(("recv", peer, tensor,
                       dist.irecv(tensor, src=peers.ranks[peer], group=peers.group, tag=tag)))
    for peer, tensor in sends:
        posted.append(("send", peer, tensor,
                       dist.isend(tensor, dst=peers.ranks[peer], group=peers.group, tag=tag)))
    limit = timeout_s()
    deadline = time.monotonic() + limit
    for i, (_, _, _, work) in enumerate(posted):
        try:
            work.wait(datetime.timedelta(seconds=max(deadline - time.monotonic(), 0.001)))
        except RuntimeError as e:
            _fail(peers, posted, i, e, what, limit)


def _fail(peers, posted, first, error, what, limit):
    text = str(error)
    pending = [posted[first]]
    for item in posted[first + 1:]:
        try:
            item[3].wait(datetime.timedelta(milliseconds=1))
        except RuntimeError:
            pending.append(item)
    _orphans.extend(item[2] for item in pending)
    who = ", ".join(sorted({peers.name(item[1]) for item in pending}))
    me = f"rank {peers.rank} of {peers.size}"
    low = text.lower()
    if "timed out" in low or "timeout" in low:
        message = (f"lightring: {what} timed out after {limit:g} s on {me}, waiting for {who}: "
                   f"that peer never posted the matching message: it failed, hung (e.g. a "
                   f"stopped process), or skipped this step. Set {ENV} (or "
                   f"lightring.distributed.init(timeout=...)) to change the deadline")
    elif "closed" in low or "reset" in low or "broken pipe" in low or "refused" in low:
        message = (f"lightring: {what} failed on {me}: {who} closed its connection (it exited, "
                   f"crashed, or skipped this step and finished) while this rank waited for it")
    else:
        message = f"lightring: {what} failed on {me} while waiting for {who}: {text}"
    _broken.setdefault(id(peers.group), message)
    raise CommError(message) from None


def all_gather(peers, tensor, tag, what):
    """Every rank's `tensor` (same shape and dtype on every rank), in group-rank order."""
    parts = [tensor if g == peers.rank else torch.empty_like(tensor) for g in range(peers.size)]
    others = [g for g in range(peers.size) if g != peers.rank]
    exchange(peers, [(g, tensor) for g in others], [(g, parts[g]) for g in others], tag, what)
    return parts


def broadcast(peers, tensor, root, tag, what):
    """tensor of group rank `root` into `tensor` on every rank (in place)."""
    if peers.rank == root:
        exchange(peers, [(g, tensor) for g in range(peers.size) if g != root], [], tag, what)
    else:
        exchange(peers, [], [(root, tensor)], tag, what)
    return tensor


def reduce_sum(peers, tensor, root, tag, what):
    """The sum of every rank's tensor on group rank `root` (returned there; others get None)."""
    if peers.rank != root:
        exchange(peers, [(root, tensor)], [], tag, what)
        return None
    parts = [torch.empty_like(tensor) for _ in range(peers.size - 1)]
    others = [g for g in range(peers.size) if g != root]
    exchange(peers, [], list(zip(others, parts)), tag, what)
    total = tensor.clone()
    for part in parts:
        total += part
    return total


def all_gather_bytes(peers, data, tag, what):
    """Every rank's bytes object, in group-rank order (lengths first, then padded bytes)."""
    device = torch.device("cpu") if dist.get_backend(peers.group) != "nccl" else \
        torch.device("cuda", torch.cuda.current_device())
    length = torch.tensor([len(data)], dtype=torch.int64, device=device)
    lengths = [int(t.item()) for t in all_gather(peers, length, tag, what)]
    padded = torch.zeros(max(max(lengths), 1), dtype=torch.uint8)
    if data:
        padded[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    parts = all_gather(peers, padded.to(device), tag, what)
    return [bytes(p[:n].cpu().tolist()) for p, n in zip(parts, lengths)]
