"""The lightring NCCL exchange: lightring's own NCCL communicator per torch group.

The default for NCCL process groups (``exchange="auto"``): validated on two
H200 (tests/python/test_distributed.py::test_nccl_two_gpus[lightring], 2026-11-22).
``exchange="lightring"`` (or ``LIGHTRING_EXCHANGE=lightring``) demands it and
fails where it cannot run; ``exchange="torch"`` keeps the torch.distributed
schedules of lightring/sequence_parallel.py (any backend). "auto" picks
"lightring" when the group's backend is NCCL and this build has the NCCL
exchange, "torch" otherwise: the same answer on every rank.

For an NCCL process group, the first sequence-parallel call on it:

1. group rank 0 makes a 128-byte NCCL unique id (``_C.nccl_unique_id()``) and
   broadcasts it over the group as a uint8 tensor (torch.distributed);
2. every rank creates ``torch.classes.lightring.NcclCommunicator(id, group
   rank, group size, device, timeout)``: lightring's C++ communicator
   (comm/nccl_communicator.h) with its own CUDA stream, ordered against torch's
   current stream by events;
3. the communicator is cached for that group (and device). The Python object
   owns it: ``release()`` drops the cache, and the last reference destroys it.

Each call then runs the C++ ops ``lightring::sp_forward`` / ``sp_backward``
(parallel/sequence_parallel.h: Options::agreed_lengths: local state pass, exchange, main local pass) on torch's
current stream, through the autograd Function every exchange shares
(lightring/sequence_parallel.py). The inputs are agreed once per forward and
once per backward, in Python over the group (lightring/agreement.py), which
passes every rank's shard length to the ops; the ops do not agree them again.
The global final state and its gradient (only when ``output_final_state``)
still travel over torch.distributed (a broadcast from the last rank, a reduce
to it). Autograd saves the inputs and S_in only.
"""
import atexit
import os

import torch
import torch.distributed as dist


from . import _ext, collectives, sequence_parallel

EXCHANGES = ("auto", "torch", "lightring")
ENV = "LIGHTRING_EXCHANGE"
_ID_BYTES = 128

_CACHE = {}  # (id(process group), device index) -> (process group, communicator)


def resolve(exchange):
    """The exchange asked for: `exchange`, else $LIGHTRING_EXCHANGE, else "auto"."""
    source = "exchange"
    if exchange is None:
        exchange, source = os.environ.get(ENV) or "auto", f"${ENV}"
    if exchange not in EXCHANGES:
        raise ValueError(f"{source} must be one of {', '.join(EXCHANGES)} (got {exchange!r})")
    return exchange


def select(exchange, group):
    """The exchange that runs over `group`: "auto" becomes "lightring" where it can run
    (an NCCL group and a build with the NCCL exchange), else "torch"."""
    if exchange != "auto":
        return exchange
    return "lightring" if unavailable_reason(group) is None else "torch"


def built():
    """Whether this build of lightring._C has the NCCL exchange (NCCL found at build
    time and a CUDA build of torch)."""
    return bool(getattr(_ext.load(), "nccl_exchange", False))


def unavailable_reason(group):
    """Why the lightring NCCL exchange cannot run over `group`, or None when it can.
    Depends only on the build and the group's backend, so every rank agrees."""
    module = _ext.load()
    if not built():
        return (f"this lightring build has no NCCL exchange (it needs NCCL at build time and a "
                f"CUDA build of torch; it was built against torch {module.torch_version}, "
                f"CUDA tensors: {bool(module.torch_cuda)})")
    backend = dist.get_backend(group)
    if backend != "nccl":
        return f"it needs an NCCL process group (this group's backend is {backend!r})"
    return None


def check_available(group):
    reason = unavailable_reason(group)
    if reason is not None:
        raise RuntimeError(f"lightring: the lightring NCCL exchange (exchange='lightring' or "
                           f"{ENV}=lightring) is unavailable: {reason}. Use the default "
                           "exchange='torch' instead")


def check_device(q, device):
    """The inputs must be on the group's device (torch.cuda.current_device())."""
    if q.device != device:
        return ValueError(f"exchange='lightring' needs q, k, v on this rank's current CUDA device "
                          f"{device} (got {q.device}); call torch.cuda.set_device() first")
    return None


def _default_group(group):
    if group is None or group is dist.group.WORLD:
        return dist.distributed_c10d._get_default_group()
    return group


def cached(group, device=None):
    """The cached communicator of `group` on `device` (default: the current CUDA device),
    or None."""
    device = torch.cuda.current_device() if device is None else torch.device(device).index
    entry = _CACHE.get((id(_default_group(group)), device))
    return None if entry is None else entry[1]


def communicator(group, device):
    """The lightring communicator of `group` on CUDA `device`, created on first use
    (collective over the group: every rank must call it) and cached."""
    pg = _default_group(group)
    key = (id(pg), device.index)
    entry = _CACHE.get(key)
    if entry is not None:
        if entry[1].aborted():
            del _CACHE[key]
            raise RuntimeError("lightring: the NCCL communicator of this group was aborted after "
                               "an earlier failure; call lightring.nccl_exchange.release() on "
                               "every rank before using the group again")
        return entry[1]
    comm = _bootstrap(pg, device)
    _CACHE[key] = (pg, comm)  # the group is kept alive, so its id is not reused
    return comm


def _bootstrap(group, device):
    rank, size = dist.get_rank(group), dist.get_world_size(group)
    # Byte 0: 1 when rank 0 made the id, so that its failure fails every rank.
    message = torch.zeros(_ID_BYTES + 1, dtype=torch.uint8)
    error = None
    if rank == 0:
        try:
            message[1:] = torch.tensor(list(_ext.load().nccl_unique_id()), dtype=torch.uint8)
            message[0] = 1
        except RuntimeError as e:
            error = e
    message = message.to(device)
    peers = collectives.Peers(group, sequence_parallel.group_ranks(group))
    collectives.broadcast(peers, message, 0, collectives.TAG_NCCL_ID,
                          "the broadcast of the NCCL unique id")
    message = message.cpu()
    if error is not None:
        raise error
    if int(message[0]) != 1:
        raise RuntimeError("lightring: group rank 0 could not create an NCCL unique id "
                           "(see its error)")
    timeout = collectives.timeout_s()
    comm = torch.classes.lightring.NcclCommunicator(message[1:].clone(), rank, size,
                                                    device.index, timeout)
    if (comm.rank(), comm.size()) != (rank, size):
        raise RuntimeError(f"lightring: communicator is rank {comm.rank()} of {comm.size()}, "
                           f"the group says {rank} of {size}")
    return comm


def release(group=None):
    """Drops the cached communicator(s) of `group` (all groups when None); each is
    destroyed with its last reference. Call it on every rank of the group."""
    if group is None:
        _CACHE.clear()
        return
    pg = id(_default_group(group))
    for key in [key for key in _CACHE if key[0] == pg]:
        del _CACHE[key]


@atexit.register
def _abort_at_exit():
    # At exit a peer may be gone already: abort (local) rather than finalize (which
    # may wait for peers up to the deadline).
    for _, comm in list(_CACHE.values()):
        try:
            comm.abort()
        except RuntimeError:
            pass
    _CACHE.clear()


# The C++ ops (csrc/nccl_ops.cpp), looked up at call time.
def _sp_forward(*args):
    return torch.ops.lightring.sp_forward(*args)


def _sp_backward(*args):
    return torch.ops.lightring.sp_backward(*args)


class LightringExchange(sequence_parallel.GroupExchange):
    """The exchange inside the C++ ops, on lightring's communicator of the group (created on
    the first forward, after the agreement, and cached). The ops run over the agreed shard
    lengths and do not agree the inputs again (parallel/sequence_parallel.h: Options::agreed_lengths)."""

    name = "lightring"

    def local_error(self, q):
        return check_device(q, self.device)

    def transport(self):
        return "nccl"

    def forward(self, q, k, v, decay, s0, scale, block_size, need_final):
        self.comm = communicator(self.group, self.device)
        o, s_in, final = _sp_forward(q, k, v, decay, scale, s0, need_final, block_size,
                                     self.comm, self.schedule, self.lengths)
        # The global final state is on the last rank; every rank returns it.
        return o, s_in, (self.broadcast_final(final, q, v) if need_final else None)

    def backward(self, q, k, v, d_o, decay, scale, s_in, g, want_ds0, block_size):
        return _sp_backward(q, k, v, d_o, decay, scale, s_in, g, want_ds0, block_size,
                            self.comm, self.schedule, self.lengths)
