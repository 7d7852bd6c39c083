"""bench/sp_report.py (--weak and --strong with any number of P) and tools/plot_scaling.py on a
small synthetic set of lightring-bench JSONs whose efficiencies are known exactly."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SP_REPORT = os.path.join(REPO, "bench", "sp_report.py")
PLOT = os.path.join(REPO, "tools", "plot_scaling.py")

# tokens/s of the fwdbwd row at (P, n_local): P = 4 deliberately worse than P = 2.
WEAK_TOK_S = {(1, 1024): 1000.0, (1, 4096): 800.0, (2, 1024): 1900.0, (2, 4096): 1560.0,
              (4, 1024): 3000.0, (4, 4096): 3040.0, (8, 1024): 4000.0}
# strong: the same global N = 8192 at P = 1, 2, 4, 8.
STRONG_TOK_S = {1: 500.0, 2: 950.0, 4: 1700.0, 8: 2000.0}


def bench_json(path, P, rows):
    """rows: [(N, n_local, tok_s)] -> a lightring-bench JSON with fwd, bwd, fwdbwd rows each."""
    out = []
    for N, n_local, tok_s in rows:
        ms = N / tok_s * 1e3
        for pas, frac in (("fwd", 0.3), ("bwd", 0.7), ("fwdbwd", 1.0)):
            row = {"impl": "lightring", "P": P, "B": 1, "H": 4, "D": 64, "E": 64, "schedule": "ring",
                   "N": N, "n_local": n_local, "n_local_min": n_local, "pass": pas, "ms": ms * frac,
                   "tokens_per_s": tok_s / frac, "peak_GB": 1.0, "alloc_peak_GB": 0.5,
                   "exchange_ms": 0.01, "exchange_span_ms": 0.02, "state_bytes": 65536,
                   "messages": 2}
            if pas == "fwdbwd":
                row.update(local_ms=ms * 0.9, exposed_ms=ms * 0.1, overlap=0.0, tokens_per_s=tok_s)
            out.append(row)
    doc = {"tool": "lightring-bench", "world_size": P, "backend": "cpu", "mode": "run",
           "ceilings": {}, "rows": out}
    with open(path, "w") as f:
        json.dump(doc, f)
    return str(path)


@pytest.fixture
def files(tmp_path):
    weak = []
    for P in (4, 1, 8, 2):  # any order
        rows = [(n * P, n, t) for (p, n), t in WEAK_TOK_S.items() if p == P]
        weak.append(bench_json(tmp_path / f"weak-p{P}.json", P, rows))
    strong = [bench_json(tmp_path / f"strong-p{P}.json", P, [(8192, 8192 // P, t)])
              for P, t in STRONG_TOK_S.items()]
    return weak, strong


def run(*args):
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_sp_report_every_p(files, tmp_path):
    weak, strong = files
    merged = tmp_path / "merged.json"
    out = run(SP_REPORT, "--weak", *weak, "--strong", *strong, "--out", str(merged))
    summary = json.load(open(merged))["summary"]
    got = {(r["P"], r["n_local"]): r for r in summary["weak"]}
    # every P > 1 of --weak, every n_local it ran
    assert set(got) == {(P, n) for (P, n) in WEAK_TOK_S if P > 1}
    for (P, n), r in got.items():
        want = WEAK_TOK_S[(P, n)] / (P * WEAK_TOK_S[(1, n)])
        assert r["efficiency"] == pytest.approx(want, rel=1e-12)
        assert r["speedup"] == pytest.approx(WEAK_TOK_S[(P, n)] / WEAK_TOK_S[(1, n)], rel=1e-12)
    assert got[(4, 1024)]["efficiency"] == pytest.approx(0.75)
    strong_rows = {r["P"]: r for r in summary["strong"]}
    assert set(strong_rows) == {2, 4, 8}
    for P, r in strong_rows.items():
        assert r["speedup"] == pytest.approx(STRONG_TOK_S[P] / STRONG_TOK_S[1], rel=1e-12)
        assert r["efficiency"] == pytest.approx(STRONG_TOK_S[P] / (P * STRONG_TOK_S[1]), rel=1e-12)
    # the printed tables carry the same numbers: the P = 4, n_local = 1024 row, efficiency 0.750
    weak_lines = [l.split() for l in out.splitlines() if l.split()[:2] == ["1024", "4"]]
    assert len(weak_lines) == 1 and weak_lines[0][5] == "0.750", out
    strong_lines = [l.split() for l in out.splitlines() if l.split()[:2] == ["8192", "8"]]
    assert len(strong_lines) == 1 and strong_lines[0][6] == "0.500", out


def test_plot_scaling_writes_png(files, tmp_path):
    pytest.importorskip("matplotlib")
    weak, strong = files
    for mode, inputs in (("weak", weak), ("strong", strong)):
        png = tmp_path / f"{mode}.png"
        out = run(PLOT, *inputs, "-o", str(png), "--mode", mode, "--table")
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(png) > 10000
        points = [l.split() for l in out.splitlines() if l.split() and l.split()[0].isdigit()]
        if mode == "weak":
            assert len(points) == len(WEAK_TOK_S)
            eff = {(int(p[0]), int(p[2])): p[4] for p in points}
            assert eff[(8, 1024)] == "0.500" and eff[(4, 4096)] == "0.950" and eff[(1, 1024)] == "1.000"
        else:
            eff = {int(p[0]): p[4] for p in points}
            assert eff == {1: "1.000", 2: "0.950", 4: "0.850", 8: "0.500"}
