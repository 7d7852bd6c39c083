"""The torch.distributed example of python/README.md runs as written (mpirun -np 2, gloo)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun")
def test_readme_distributed_example(tmp_path):
    text = open(os.path.join(REPO, "python", "README.md")).read()
    section = text.split("## torch.distributed example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    script = tmp_path / "example.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(REPO, "python"), os.environ.get("PYTHONPATH", "")]))
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU / gloo run (2 ranks may share one GPU otherwise)
    # --output-filename: mpirun writes each rank's stdout to its own file
    # (<dir>/1/rank.<r>/stdout), so the two ranks' prints cannot interleave.
    out_dir = tmp_path / "out"
    proc = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "--output-filename",
                           str(out_dir), "-np", "2", sys.executable, str(script)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    for rank in (0, 1):
        files = list(out_dir.glob(f"*/rank.{rank}/stdout"))
        assert len(files) == 1, (rank, [str(f) for f in out_dir.rglob("*")])
        lines = files[0].read_text().splitlines()
        assert f"{rank} (2, 2048, 512) (2, 4096, 512)" in lines, (lines, proc.stdout[-4000:])
