"""torch.distributed set-up for lightring: init under torchrun or mpirun,
data-parallel x sequence-parallel groups, and sequence sharding helpers.

    ctx = lightring.distributed.init()              # torchrun, mpirun or srun
    dp, sp = lightring.distributed.new_groups(dp=2, sp=ctx.world_size // 2)
    q_local = lightring.distributed.shard(q, sp, dim=2)
"""
import atexit
import collections
import datetime
import os
import socket

import torch
import torch.distributed as dist

from . import collectives

Context = collections.namedtuple("Context", "rank world_size local_rank device backend")

# Launcher variables, first match wins: torchrun, Open MPI, MPICH / Intel MPI (PMI), Slurm.
_RANK = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")
_WORLD = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")
_LOCAL_RANK = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID")
_LOCAL_WORLD = ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                "SLURM_NTASKS_PER_NODE")


def _env_int(names, default=None):
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            try:
                return int(value.split("(")[0])
            except ValueError:
                raise ValueError(f"environment variable {name}={value!r} is not an integer")
    return default


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _interface_addresses():
    """The IPv4 addresses of this host's network interfaces, loopback excluded (Linux)."""
    import fcntl
    import struct
    out = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:  # SIOCGIFADDR
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:  # no IPv4 address on this interface
                continue
        address = socket.inet_ntoa(packed[20:24])
        if not address.startswith("127."):
            out.append(address)
    return out


def master_address():
    """An address of this host that other nodes can reach: its name's address unless that is a
    loopback address (a usual Debian /etc/hosts maps the host name to 127.0.1.1), else the
    first non-loopback interface address. $LIGHTRING_MASTER_ADDR overrides both."""
    forced = os.environ.get("LIGHTRING_MASTER_ADDR")
    if forced:
        try:  # a name that does not resolve fails here, not as a rendezvous timeout on every rank
            socket.getaddrinfo(forced, None)
        except (OSError, UnicodeError) as e:
            raise ValueError(f"$LIGHTRING_MASTER_ADDR={forced!r} is neither an address nor a host "
                             f"name that resolves here ({e}); set it to an address of rank 0's "
                             "host that the other nodes reach, or unset it") from None
        return forced
    try:
        address = socket.gethostbyname(socket.getfqdn())
    except OSError:
        address = "127.0.0.1"
    if not address.startswith("127."):
        return address
    found = _interface_addresses()
    if not found:
        raise RuntimeError(f"lightring.distributed.init(): this host's name resolves to {address} "
                           "(loopback) and no interface has another IPv4 address, so other nodes "
                           "cannot reach rank 0: export MASTER_ADDR (or LIGHTRING_MASTER_ADDR)")
    return found[0]


def _rendezvous(rank, world_size, single_node):
    """MASTER_ADDR / MASTER_PORT from rank 0, broadcast over MPI (mpi4py)."""
    try:
        from mpi4py import MPI
    except ImportError:
        MPI = None
    if MPI is not None and MPI.COMM_WORLD.Get_size() == world_size:
        address, error = None, None
        if rank == 0:
            try:
                host = "127.0.0.1" if single_node else master_address()
                address = (host, _free_port())
            except (ValueError, RuntimeError, OSError) as e:
                error, address = e, f"{type(e).__name__}: {e}"  # a str: every rank raises it
        address = MPI.COMM_WORLD.bcast(address, root=0)
        if error is not None:
            raise error
        if isinstance(address, str):
            raise RuntimeError(f"lightring.distributed.init(): rank 0 could not choose the "
                               f"rendezvous address: {address}")
        return address
    if single_node:
        # Without mpi4py: every rank of one launcher shares its parent (the MPI daemon).
        return "127.0.0.1", 20000 + os.getppid() % 20000
    raise RuntimeError("lightring.distributed.init(): MASTER_ADDR/MASTER_PORT are not set and "
                       "mpi4py is not available to broadcast them from rank 0; export them or "
                       "install mpi4py")


def init(backend=None, device=None, timeout=None):
    """Initialises torch.distributed from torchrun, mpirun (Open MPI, MPICH/PMI) or Slurm.

    timeout (seconds or a timedelta) is the deadline of every wait for a peer, lightring's
    own (lightring.collectives) and the process group's; default $LIGHTRING_COMM_TIMEOUT_S,
    else 300 s. When it passes, every waiting rank raises an error naming the peers.

    Maps the launcher's variables to RANK / WORLD_SIZE / LOCAL_RANK, sets
    MASTER_ADDR / MASTER_PORT from rank 0 (via mpi4py) when the launcher did
    not, picks the device (cuda:LOCAL_RANK when CUDA is available, else cpu)
    and the backend (nccl on CUDA, gloo on cpu). A single process without a
    launcher becomes a world of one. Returns Context(rank, world_size,
    local_rank, device, backend); calling it again returns the same context.
    """
    rank = _env_int(_RANK, 0)
    world_size = _env_int(_WORLD, 1)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
    local_world = _env_int(_LOCAL_WORLD)
    local_rank = _env_int(_LOCAL_RANK)
    if local_rank is None:
        local_rank = rank % local_world if local_world else rank
    single_node = local_world == world_size if local_world else world_size == 1

    if device is None:
        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            if (local_world or 1) > count:
                raise RuntimeError(f"lightring.distributed.init(): {local_world} ranks on this "
                                   f"node but {count} visible GPU(s); launch one rank per GPU, "
                                   "or pass device='cpu' (gloo)")
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda": this rank's GPU
        device = torch.device("cuda", local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"

    if not dist.is_initialized():
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(local_rank))
        if local_world:
            os.environ["LOCAL_WORLD_SIZE"] = str(local_world)
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            if world_size == 1:
                host, port = "127.0.0.1", _free_port()
            else:
                host, port = _rendezvous(rank, world_size, single_node)
            os.environ.setdefault("MASTER_ADDR", host)
            os.environ.setdefault("MASTER_PORT", str(port))
        # One deadline for lightring's waits and for the group's own (its collectives, the
        # rendezvous): timeout=, else $LIGHTRING_COMM_TIMEOUT_S, else 300 s.
        if timeout is not None:
            collectives.set_timeout(timeout)
        deadline = datetime.timedelta(seconds=collectives.timeout_s())
        dist.init_process_group(backend, rank=rank, world_size=world_size, init_method="env://",
                                timeout=deadline)
        atexit.register(_destroy_at_exit)
    else:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        backend = dist.get_backend()
    try:
        from . import _ext
        _ext.load().set_error_rank(rank)
    except ImportError:
        pass
    return Context(rank, world_size, local_rank, device, backend)


def _destroy_at_exit():
    """Destroys the process groups init() created while Python is still alive.

    A group left to the interpreter's finalisation can abort the process: with
    torch 1.13 and gloo, a worker thread frees a tensor that holds a Python
    object after finalisation began ("terminate called without an active
    exception", seen on 1 of ~5 runs of a 2-rank job). Runs at exit only; a
    program that destroys the groups itself is unaffected.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # at exit, never turn a clean run into a failure
            pass


def node_name():
    """The node this process says it is on: $LIGHTRING_NODE_NAME when set and not empty (tests
    that make one host look like several nodes), else the host name; lightring-train and
    lightring-bench use the same rule (docs/multinode.md)."""
    return os.environ.get("LIGHTRING_NODE_NAME") or socket.gethostname()


def _rank_list(ranks):
    if len(ranks) > 1 and ranks[-1] - ranks[0] + 1 == len(ranks):
        return f"{ranks[0]}-{ranks[-1]}"
    return ",".join(str(r) for r in ranks)


def sp_placement_error(names, sp):
    """None when every block of sp consecutive ranks lies on one node, where names[r] is the node
    of world rank r; else why not, naming sp and the node layout (the text of lightring-train's
    error, with sp= and sp_across_nodes=True for --sp and --sp-across-nodes)."""
    order = list(dict.fromkeys(names))  # nodes in the order of their first rank
    ranks_of = {n: [r for r, m in enumerate(names) if m == n] for n in order}
    counts = sorted({len(v) for v in ranks_of.values()})
    per_node = counts[0] if len(counts) == 1 else 0
    blocked = all(names.index(names[r]) >= names.index(names[r - 1]) for r in range(1, len(names)))
    for first in range(0, len(names), sp):
        nodes = list(dict.fromkeys(names[first:first + sp]))
        if len(nodes) == 1:
            continue
        size = (f"{len(order)} node{'s' if len(order) > 1 else ''} x {per_node} "
                f"rank{'s' if per_node > 1 else ''}" if per_node else
                f"{len(order)} nodes, {counts[0]}-{counts[-1]} ranks each")
        where = "; ".join(
            f"{n}: rank{'s' if len(ranks_of[n]) > 1 else ''} {_rank_list(ranks_of[n])}"
            for n in order)
        advice = (f"pick an sp that divides {per_node} (the ranks per node)" if per_node and blocked
                  else "start the ranks node by node (mpirun --map-by slot) with sp dividing the "
                       "ranks of every node")
        return (f"sp={sp} puts SP group {first // sp} (ranks {first}-{first + sp - 1}) on "
                f"{len(nodes)} nodes ({', '.join(nodes)}); the job has {size} ({where}): {advice}, "
                f"or pass sp_across_nodes=True to let SP groups span nodes")
    return None


def new_groups(dp, sp, sp_across_nodes=False):
    """Data-parallel x sequence-parallel groups over the world, sp fastest:

        world rank = d * sp + s,  d in [0, dp), s in [0, sp)

    The sequence-parallel group of a rank holds the sp consecutive ranks of its
    d (they share one sequence, in rank order); its data-parallel group holds
    the ranks with its s. Every rank must call this (it creates all groups).
    Every SP group must lie on one node (node_name() of its ranks): otherwise
    every rank raises the same ValueError naming sp and the node layout, unless
    sp_across_nodes=True. Returns (dp_group, sp_group) of the calling rank.
    """
    if not dist.is_initialized():
        raise RuntimeError("new_groups needs torch.distributed to be initialised "
                           "(lightring.distributed.init())")
    for name, value in (("dp", dp), ("sp", sp)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int (got {value!r})")
    world = dist.get_world_size()
    if dp * sp != world:
        raise ValueError(f"dp x sp must equal the world size (got {dp} x {sp} = {dp * sp} for a "
                         f"world of {world})")
    if sp > 1 and not sp_across_nodes:
        world_peers = collectives.Peers(dist.group.WORLD, list(range(world)))
        names = [b.decode() for b in collectives.all_gather_bytes(
            world_peers, node_name().encode(), collectives.TAG_GATHER,
            "lightring.distributed.new_groups (the node of every rank)")]
        error = sp_placement_error(names, sp)
        if error is not None:  # the same names on every rank: every rank raises
            raise ValueError(error)
    rank = dist.get_rank()
    dp_group = sp_group = None
    for d in range(dp):
        g = dist.new_group([d * sp + s for s in range(sp)])
        if rank // sp == d:
            sp_group = g
    for s in range(sp):
        g = dist.new_group([d * sp + s for d in range(dp)])
        if rank % sp == s:
            dp_group = g
    return dp_group, sp_group


def _group_size_rank(group):
    if not dist.is_initialized():
        raise RuntimeError("shard/gather need torch.distributed to be initialised")
    rank = dist.get_rank(group)
    if rank < 0:
        raise ValueError("this process is not a member of the group")
    return dist.get_world_size(group), rank


def shard(x, group=None, dim=2):
    """This rank's contiguous piece of x along dim (the sequence; 2 for [B, H, N, D],
    1 for [B, N, H, D]). Lengths differ by at most one, earlier ranks longer;
    the result is a view of x."""
    size, rank = _group_size_rank(group)
    if x.shape[dim] < size:
        raise ValueError(f"cannot shard a sequence of {x.shape[dim]} tokens (dim {dim}) over "
                         f"{size} ranks: every rank needs at least one token")
    return torch.tensor_split(x, size, dim=dim)[rank]


def gather(x, group=None, dim=2):
    """Inverse of shard: the concatenation of every rank's piece along dim, on every
    rank. Pieces may differ in length along dim; other dims must match."""
    size, _ = _group_size_rank(group)
    from .sequence_parallel import group_ranks
    peers = collectives.Peers(group, group_ranks(group))
    what = "lightring.distributed.gather"
    lengths = torch.tensor([x.shape[dim]], dtype=torch.int64, device=x.device)
    all_lengths = collectives.all_gather(peers, lengths, collectives.TAG_GATHER, what)
    all_lengths = [int(n.item()) for n in all_lengths]
    longest = max(all_lengths)
    padded = x
    if x.shape[dim] < longest:
        pad_shape = list(x.shape)
        pad_shape[dim] = longest - x.shape[dim]
        padded = torch.cat([x, x.new_zeros(pad_shape)], dim=dim)
    parts = collectives.all_gather(peers, padded.contiguous(), collectives.TAG_GATHER, what)
    return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, all_lengths)], dim=dim)
