"""tools/check_docs.py finds references to files that do not exist, and the repository has none."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHECKER = os.path.join(REPO, "tools", "check_docs.py")
DOCS = "docs"  # paths below are built from this, so that this file cites nothing itself


def run(root):
    return subprocess.run([sys.executable, CHECKER, "--root", str(root)], capture_output=True,
                          text=True, timeout=120)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_reports_each_broken_reference(tmp_path):
    write(tmp_path / DOCS / "real.md", "# real\n")
    write(tmp_path / "guide" / "sub.md", "# sub\n")
    write(tmp_path / "README.md", "\n".join([
        "# title",
        f"[good]({DOCS}/real.md) and [good with anchor]({DOCS}/real.md#real)",
        "[relative good](guide/sub.md), [web](https://example.com/x.md), [anchor](#title)",
        f"[broken]({DOCS}/missing.md#section)",
        "```",
        "[inside a code block](not/checked.md)",
        "```",
        "[reference]: guide/absent.md",
        "",
    ]))
    write(tmp_path / "guide" / "notes.md", "[up one](../README.md) [wrong](../nothing.md)\n")
    write(tmp_path / "src" / "code.cpp", "\n".join([
        f"// the math of {DOCS}/real.md §1",
        f"// and of {DOCS}/gone.md §2",
        f"// outside the repository: ../shared/{DOCS}/real.md",
        f"// a URL is not a path: https://example.com/{DOCS}/gone.md",
        "",
    ]))
    write(tmp_path / "bench" / "results" / "old.md", "[excluded](nowhere.md)\n")
    proc = run(tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = sorted(proc.stdout.splitlines())
    assert found == sorted([
        f"README.md:4: {DOCS}/missing.md#section",
        "README.md:8: guide/absent.md",
        "guide/notes.md:1: ../nothing.md",
        f"src/code.cpp:2: {DOCS}/gone.md",
        f"src/code.cpp:3: ../shared/{DOCS}/real.md",
    ]), proc.stdout


def test_clean_tree_passes(tmp_path):
    write(tmp_path / DOCS / "a.md", "see [b](b.md)\n")
    write(tmp_path / DOCS / "b.md", f"back to {DOCS}/a.md\n")
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_repository_has_no_dangling_references():
    proc = run(REPO)
    assert proc.returncode == 0, "dangling references:\n" + proc.stdout
