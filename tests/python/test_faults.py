"""Fault injection: hostile and careless runs of lightring-bench (mpirun) and of the Python API
(gloo, ranks started torchrun-style), on 2 and 3 ranks. Every case has its own time limit and
fails when it reaches it (the whole process tree is killed): nothing here can hang CI.

Each scenario asserts what every live rank says and how the job ends:
  * a stalled rank (SIGSTOP sent by this test): every other rank raises an error naming it within
    the deadline (LIGHTRING_COMM_TIMEOUT_S), and the job ends (lightring-bench: MPI_Abort after
    the grace period; Python: the live ranks exit with the error, without an abort at exit);
  * ranks that disagree (mpirun's per-rank syntax, or per-rank arguments): every rank reports
    the option or input in words, before any message whose size depends on it;
  * a rank that skips backward, or exits: every other rank says so;
  * bad flags and environment: an error before any work.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MPIRUN = shutil.which("mpirun")
BUILD = os.environ.get("LIGHTRING_BUILD_DIR", os.path.join(REPO, "build"))
BENCH = os.path.join(BUILD, "launch", "lightring-bench")
DEADLINE = 3  # seconds: LIGHTRING_COMM_TIMEOUT_S / --timeout of the stall cases
SLACK = 20    # seconds on top of what a case needs (start-up, a loaded 2-core CI machine)

needs_mpi = pytest.mark.skipif(MPIRUN is None or not os.path.exists(BENCH),
                               reason="needs mpirun and a built lightring-bench")
needs_dist = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="needs torch.distributed")


class Job:
    """A process tree in its own session, killed whole when the case ends or times out. A
    thread collects its output lines as they come."""

    def __init__(self, cmd, env=None):
        self.start = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.lines = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # end of output
            self.cond.notify_all()

    def output(self):
        with self.cond:
            return "".join(line for line in self.lines if line is not None)

    def read_until(self, pattern, limit):
        """Waits for an output line matching `pattern`; fails the test after `limit` s."""
        end = time.monotonic() + limit
        seen = 0
        with self.cond:
            while time.monotonic() < end:
                for line in self.lines[seen:]:
                    if line is None:
                        end = 0
                        break
                    if re.search(pattern, line):
                        return line
                seen = len(self.lines)
                self.cond.wait(timeout=0.2)
        self.kill()
        pytest.fail(f"no line matching {pattern!r} within {limit} s:\n{self.output()}")

    def wait(self, limit):
        """(exit code, whole output, seconds since start); fails the test after `limit` s."""
        try:
            self.proc.wait(timeout=max(limit - (time.monotonic() - self.start), 1))
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
            self.reader.join(5)
            pytest.fail(f"still running after {limit} s (a hang):\n{self.output()}")
        took = time.monotonic() - self.start
        self.reader.join(10)
        return self.proc.returncode, self.output(), took

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    except OSError:
        return {}


def mpi_rank_pid(job, rank):
    """The pid of MPI rank `rank` of this job (its session, OMPI_COMM_WORLD_RANK)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.getsid(pid) != job.proc.pid:
                continue
        except OSError:
            continue
        env = _environ(pid)
        if env.get(b"OMPI_COMM_WORLD_RANK") == str(rank).encode() and \
                b"lightring-bench" in open(f"/proc/{pid}/cmdline", "rb").read():
            return pid
    pytest.fail(f"no process of MPI rank {rank} found")


def mpirun(*args, env=None):
    return [MPIRUN, "--allow-run-as-root", "--oversubscribe", *args]


def rank_errors(out):
    """{rank: first lightring error line of that rank}."""
    found = {}
    for m in re.finditer(r"lightring error \[rank (\d+)\]: (.*)", out):
        found.setdefault(int(m.group(1)), m.group(2))
    return found


# --- lightring-bench -------------------------------------------------------------------------

@needs_mpi
@pytest.mark.parametrize("np_", [2, 3])
def test_bench_stalled_rank(np_):
    """SIGSTOP one rank mid-run (--local-len 16384 -n 200): every other rank names it within the
    deadline, and the job ends within deadline + grace (MPI_Abort of the silent rank)."""
    victim = 1
    job = Job(mpirun("-np", str(np_), BENCH, "--backend", "cpu", "--local-len", "16384",
                     "-n", "200", "--timeout", str(DEADLINE), "--no-ceilings"))
    job.read_until(r"^#\s+N\s+n_local", 60)  # the table header: the timed rows started
    time.sleep(0.5)
    stopped = time.monotonic()
    os.kill(mpi_rank_pid(job, victim), signal.SIGSTOP)
    rc, out, _ = job.wait(60)
    took = time.monotonic() - stopped
    errors = rank_errors(out)
    live = [r for r in range(np_) if r != victim]
    for r in live:
        assert r in errors, f"rank {r} printed no lightring error:\n{out}"
        assert f"rank {victim}" in errors[r], f"rank {r} does not name rank {victim}:\n{out}"
    assert "(this rank was " in out, out  # what it was doing
    assert f"world rank {victim} did not report" in out, out
    assert rc == 2, f"exit code {rc}:\n{out}"
    # Deadline + grace (min(deadline, 10)), plus the start of a wait and the process teardown.
    assert took < 2 * DEADLINE + SLACK, f"the job took {took:.1f} s after the stop:\n{out}"


BENCH_MISMATCHES = [
    (["--heads", "4"], ["--heads", "8"], "--heads differs"),
    (["--dim", "32"], ["--dim", "16"], "--dim differs"),
    (["--vdim", "32"], ["--vdim", "48"], "--vdim differs"),
    (["--batch", "1"], ["--batch", "2"], "--batch differs"),
    (["-b", "2048", "-e", "2048", "-c"], ["-b", "4096", "-e", "4096", "-c"], "-b differs"),
    (["--schedule", "ring"], ["--schedule", "scan"], "--schedule differs"),
    (["--dim", "64"], ["--dim", "257"], "--dim and --vdim must be <= 256"),
    ([], ["stray"], "too many positional options"),
]


@needs_mpi
@pytest.mark.parametrize("np_", [2, 3])
@pytest.mark.parametrize("mine,theirs,message", BENCH_MISMATCHES,
                         ids=[m[2].split()[0] + "-" + m[1][-1] for m in BENCH_MISMATCHES])
def test_bench_ranks_disagree(np_, mine, theirs, message):
    """mpirun's per-rank syntax: the last rank runs other flags. Every rank reports it in words,
    before any exchange (no heap corruption, no hang), and nothing runs."""
    common = [BENCH, "--backend", "cpu", "-n", "1", "-w", "0", "--no-ceilings"]
    job = Job(mpirun("-np", str(np_ - 1), *common, *mine, ":", "-np", "1", *common, *theirs))
    rc, out, took = job.wait(SLACK + 10)
    errors = rank_errors(out)
    assert sorted(errors) == list(range(np_)), f"not every rank reported:\n{out}"
    culprit = np_ - 1
    for r, text in errors.items():
        if "differs" in message:
            assert message in text or message in out, out
        elif r != culprit:
            assert f"rank {culprit} rejected its command line" in out, out
    assert message in out, out
    assert "check:" not in out and "N  n_local" not in out, f"rows ran:\n{out}"
    for crash in ("corrupted", "Segmentation fault", "malloc", "signal 11"):
        assert crash not in out, out
    assert rc == 2, f"exit code {rc}:\n{out}"


BENCH_BAD_RUNS = [
    ({}, ["--local-len", "4611686018427387904"], "--local-len: '4611686018427387904' is out of range"),
    ({}, ["-e", "99999999999999999999"], "for option '--max-len' is invalid"),
    ({}, ["-e", "2000000000000"], "is over the longest global length"),
    ({}, ["--json", "/nonexistent-dir/x.json"], "--json: cannot write '/nonexistent-dir/x.json'"),
    ({}, ["--timeout", "-1"], "--timeout must be a positive number"),
    ({"LIGHTRING_COMM_TIMEOUT_S": "5abc"}, [], "LIGHTRING_COMM_TIMEOUT_S must be a positive"),
    ({"LIGHTRING_COMM_TIMEOUT_S": "0"}, [], "LIGHTRING_COMM_TIMEOUT_S must be a positive"),
    ({"LIGHTRING_COMM_TIMEOUT_S": "-3"}, [], "LIGHTRING_COMM_TIMEOUT_S must be a positive"),
    ({"LIGHTRING_COMM_TIMEOUT_S": "nan"}, [], "LIGHTRING_COMM_TIMEOUT_S must be a positive"),
    ({"LIGHTRING_COMM_TIMEOUT_S": ""}, [], "LIGHTRING_COMM_TIMEOUT_S must be a positive"),
]


@needs_mpi
@pytest.mark.parametrize("env,args,message", BENCH_BAD_RUNS,
                         ids=[f"{sorted(e.items())}{a}" for e, a, _ in BENCH_BAD_RUNS])
def test_bench_bad_command_line(env, args, message):
    """Rejected before any work, on every rank, with the flag or variable named."""
    job = Job(mpirun("-np", "2", BENCH, "--backend", "cpu", "--no-ceilings", *args),
              env={**os.environ, **env})
    rc, out, _ = job.wait(SLACK)
    assert message in out, out
    assert sorted(rank_errors(out)) == [0, 1], f"not every rank reported:\n{out}"
    assert "N  n_local" not in out, f"rows ran:\n{out}"
    assert rc == 2, f"exit code {rc}:\n{out}"


@needs_mpi
def test_bench_timeout_flag_wins_over_environment():
    """--timeout given explicitly beats LIGHTRING_COMM_TIMEOUT_S; the header says which."""
    job = Job(mpirun("-np", "2", BENCH, "--backend", "cpu", "-b", "256", "-e", "256", "-n", "1",
                     "--no-ceilings", "--timeout", "7"),
              env={**os.environ, "LIGHTRING_COMM_TIMEOUT_S": "40"})
    rc, out, _ = job.wait(SLACK)
    assert rc == 0 and "# deadline: 7 s" in out, out
    job = Job(mpirun("-np", "2", BENCH, "--backend", "cpu", "-b", "256", "-e", "256", "-n", "1",
                     "--no-ceilings"), env={**os.environ, "LIGHTRING_COMM_TIMEOUT_S": "40"})
    rc, out, _ = job.wait(SLACK)
    assert rc == 0 and "# deadline: 40 s" in out, out


# --- Python (gloo) ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ranks:
    """P Python ranks started torchrun-style (env://), each its own process and output."""

    def __init__(self, np_, scenario, *args, env=None):
        port = free_port()
        self.jobs = []
        for r in range(np_):
            e = {**os.environ, **(env or {}), "RANK": str(r), "WORLD_SIZE": str(np_),
                 "LOCAL_RANK": str(r), "LOCAL_WORLD_SIZE": str(np_), "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(port), "PYTHONUNBUFFERED": "1"}
            self.jobs.append(Job([sys.executable, os.path.join(HERE, "fault_worker.py"),
                                  scenario, *args], env=e))

    def wait(self, limit, skip=()):
        results = {}
        for r, job in enumerate(self.jobs):
            if r not in skip:
                results[r] = job.wait(limit)
        return results

    def kill(self):
        for job in self.jobs:
            job.kill()


def clean_exit(out):
    return "terminate called" not in out and "Aborted" not in out and "core dumped" not in out


@needs_dist
@pytest.mark.parametrize("np_", [2, 3])
def test_python_stalled_rank(np_):
    """SIGSTOP one rank between calls: every live rank raises CommError naming it within the
    deadline and exits with it (exit code 1, the traceback, no abort at exit)."""
    victim = 1
    ranks = Ranks(np_, "stall", env={"LIGHTRING_COMM_TIMEOUT_S": str(DEADLINE)})
    try:
        for job in ranks.jobs:
            job.read_until("READY", 60)
        stopped = time.monotonic()
        os.kill(ranks.jobs[victim].proc.pid, signal.SIGSTOP)
        results = ranks.wait(DEADLINE + SLACK, skip=(victim,))
        took = time.monotonic() - stopped
    finally:
        ranks.kill()
    for r, (rc, out, _) in results.items():
        assert rc == 1, f"rank {r}: exit code {rc}:\n{out}"
        assert "lightring.collectives.CommError" in out, f"rank {r}:\n{out}"
        assert f"waiting for rank {victim}" in out, f"rank {r} does not name rank {victim}:\n{out}"
        assert f"timed out after {DEADLINE} s" in out, out
        assert clean_exit(out), f"rank {r} did not exit cleanly:\n{out}"
        elapsed = float(re.search(r"ELAPSED ([\d.]+)", out).group(1))
        assert elapsed < DEADLINE + 2, f"rank {r} raised {elapsed} s after its wait began"
    assert took < DEADLINE + SLACK


@needs_dist
@pytest.mark.parametrize("np_", [2, 3])
def test_python_ranks_disagree(np_):
    """Decay values (same sums), dtype, schedule, layout, scale, D = 257 on one rank, double
    backward, decay.requires_grad: every rank raises the expected words (fault_worker.py)."""
    ranks = Ranks(np_, "mismatch")
    try:
        results = ranks.wait(SLACK + 40)
    finally:
        ranks.kill()
    for r, (rc, out, _) in results.items():
        assert rc == 0 and f"PASS mismatch rank {r}" in out, f"rank {r} exit {rc}:\n{out}"


@needs_dist
@pytest.mark.parametrize("np_", [2, 3])
def test_python_rank_skips_backward(np_):
    """One rank skips a backward and calls forward again: both sides say so, in words."""
    ranks = Ranks(np_, "skip_backward", env={"LIGHTRING_COMM_TIMEOUT_S": "30"})
    try:
        results = ranks.wait(SLACK + 30)
    finally:
        ranks.kill()
    for r, (rc, out, took) in results.items():
        assert rc == 0 and f"PASS skip_backward rank {r}" in out, f"rank {r} exit {rc}:\n{out}"


@needs_dist
@pytest.mark.parametrize("np_", [2, 3])
def test_python_rank_exits(np_):
    """One rank ends its program without its backward: the others raise CommError naming it
    (its connection closed), well before the deadline, and exit cleanly."""
    victim = 1
    ranks = Ranks(np_, "exit", env={"LIGHTRING_COMM_TIMEOUT_S": "60"})
    try:
        results = ranks.wait(SLACK + 10)
    finally:
        ranks.kill()
    for r, (rc, out, took) in results.items():
        if r == victim:
            assert rc == 0 and "PASS exit" in out, out
            continue
        assert rc == 1 and "lightring.collectives.CommError" in out, f"rank {r}:\n{out}"
        assert f"rank {victim}" in out and "closed its connection" in out, out
        assert clean_exit(out), f"rank {r} did not exit cleanly:\n{out}"
        assert took < SLACK + 10


@needs_dist
@pytest.mark.parametrize("value", ["5abc", "0", "-1", "nan", "inf", ""])
def test_python_bad_timeout_variable(value):
    """A malformed LIGHTRING_COMM_TIMEOUT_S is an error at init, never silently ignored."""
    ranks = Ranks(2, "bad_timeout", env={"LIGHTRING_COMM_TIMEOUT_S": value})
    try:
        results = ranks.wait(SLACK)
    finally:
        ranks.kill()
    for r, (rc, out, _) in results.items():
        assert rc == 0 and f"PASS bad_timeout rank {r}" in out, f"rank {r} exit {rc}:\n{out}"
