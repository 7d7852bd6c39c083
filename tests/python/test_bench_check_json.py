"""tests/bench_check_json.py, the driver of the lightring-bench ctest entries, on
hand-written JSON: it passes a good file and fails on a bad exit status, a missing
file, a row outside tolerance, a missing row and a cost that is not the model's."""
import json
import os
import subprocess
import sys

import pytest

CHECKER = os.path.join(os.path.dirname(__file__), "..", "bench_check_json.py")


def check_rows(N=4004, P=4, rel_err=1e-6, passes=("fwd", "bwd", "fwdbwd")):
    row = {"impl": "lightring", "P": P, "B": 1, "H": 3, "D": 40, "E": 24, "dtype": "fp32",
           "schedule": "ring", "N": N, "n_local": -(-N // P), "n_local_min": N // P, "ms": 2.0,
           "tokens_per_s": N / 2e-3, "rel_err": rel_err, "num_wrong": 0, "state_bytes": 11520}
    return [dict(row, **{"pass": p}) for p in passes]


def model_row(P, m, ring, allgather, scan, auto):
    return {"pass": "model", "P": P, "msg_bytes": m, "ring_us": ring, "allgather_us": allgather,
            "scan_us": scan, "auto": auto}


LINK = {"alpha_us": 15, "beta_GBps": 150, "gamma_GBps": 1000, "ranks_per_node": 8,
        "inter_alpha_us": 20, "inter_beta_GBps": 50}
# lightring-bench --model --msg-bytes 2097152 --link 15,150,1000 --inter-link 20,50
# --ranks-per-node 8 --model-ranks 2,4096 (its JSON, 6 significant digits).
MODEL = [model_row(2, 2097152, 31.0782, 31.0782, 33.1753, "ring"),
         model_row(4096, 2097152, 144109, 180585, 793.648, "scan")]
MODEL_ARGS = ["model", "--msg-bytes", "2097152", "--link", "15,150,1000", "--inter-link", "20,50",
              "--ranks-per-node", "8", "--model-ranks", "2,4096"]
CHECK_ARGS = ["check", "--ranks", "4", "--lengths", "4004", "--schedules", "ring"]


def run(args, doc, exit_status=0, write=True):
    """The checker with a stand-in command that writes doc to {json} and exits."""
    script = ("import json, sys\n"
              f"if {write}: json.dump({doc!r}, open(sys.argv[1], 'w'))\n"
              f"sys.exit({exit_status})\n")
    cmd = [sys.executable, CHECKER, *args, "--", sys.executable, "-c", script, "{json}"]
    return subprocess.run(cmd, capture_output=True, text=True)


def bench_doc(rows, P=4, **extra):
    return dict({"tool": "lightring-bench", "world_size": P, "rows": rows}, **extra)


def test_good_files_pass():
    assert run(CHECK_ARGS, bench_doc(check_rows())).returncode == 0
    assert run(MODEL_ARGS, bench_doc(MODEL, P=1, link=LINK)).returncode == 0


@pytest.mark.parametrize("case", ["exit_status", "no_file", "rel_err", "num_wrong", "missing_pass",
                                  "wrong_split"])
def test_bad_check_runs_fail(case):
    rows, status, write = check_rows(), 0, True
    if case == "exit_status":
        status = 1
    elif case == "no_file":
        write = False
    elif case == "rel_err":
        rows = check_rows(rel_err=2e-4)  # fp32 tolerance 1e-4
    elif case == "num_wrong":
        rows[2]["num_wrong"] = 3
    elif case == "missing_pass":
        rows = check_rows(passes=("fwd", "fwdbwd"))
    elif case == "wrong_split":
        for r in rows:
            r["n_local"] += 1
    r = run(CHECK_ARGS, bench_doc(rows), status, write)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL" in r.stderr


def test_model_cost_off_the_reference_fails():
    bad = json.loads(json.dumps(MODEL))
    bad[1]["scan_us"] = 800.0
    assert run(MODEL_ARGS, bench_doc(bad, P=1, link=LINK)).returncode == 1
    bad = json.loads(json.dumps(MODEL))
    bad[1]["auto"] = "ring"
    assert run(MODEL_ARGS, bench_doc(bad, P=1, link=LINK)).returncode == 1
