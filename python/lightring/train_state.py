"""What python -m lightring.train (lightring/train.py) writes and reads: the JSONL log rows of
lightring-train (docs/training.md) and its checkpoint files (format "lightring-train/1",
written atomically: a temporary file, then a rename)."""
import json
import math
import os
import resource

import torch

from .models.transnormer import CHECKPOINT_FORMAT, _resolve
from .train_options import UsageError

def _json_value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "%.17g" % v if math.isfinite(v) else "null"
    if v is None:
        return "null"
    return json.dumps(str(v), ensure_ascii=False)


def json_row(fields):
    return "{" + ",".join(f"{json.dumps(k)}:{_json_value(v)}" for k, v in fields) + "}"


class JsonlLog:
    def __init__(self, path, append):
        self.file = open(path, "a" if append else "w") if path else None

    def write(self, fields):
        if self.file:
            self.file.write(json_row(fields) + "\n")
            self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


def format_duration(s):
    if not math.isfinite(s) or s < 0:
        return "?"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s / 60)}m{int(s) % 60:02d}s"
    return f"{int(s / 3600)}h{int(s / 60) % 60:02d}m"


def format_count(v):
    if v >= 1e9:
        return f"{v / 1e9:.2f}G"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- checkpoints, as launch/train_checkpoint.cpp ------------------------------------------------

def config_dict(c):
    return {"preset": c.preset, "vocab_size": c.vocab_size, "d_model": c.d_model,
            "num_layers": c.num_layers, "num_heads": c.num_heads,
            "head_dim": c.resolved_head_dim, "ffn_dim": c.resolved_ffn_dim,
            "scale_embedding": bool(c.scale_embedding), "norm_eps": float(c.norm_eps),
            "init_std": float(c.init_std)}


def _write_atomically(path, write):
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, "." + name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(save_dir, model, optimizer, step, position, o):
    os.makedirs(save_dir, exist_ok=True)
    names = {p: n for n, p in model.named_parameters()}
    weights, opt = {}, {}
    for n, p in model.named_parameters():
        weights[n] = p.detach().float().cpu().clone()
        s = optimizer.state.get(p)
        if s:
            opt[n] = {"step": int(s["step"]), "exp_avg": s["exp_avg"].float().cpu().clone(),
                      "exp_avg_sq": s["exp_avg_sq"].float().cpu().clone()}
    del names
    root = {"format": CHECKPOINT_FORMAT, "step": int(step), "config": config_dict(model.config),
            "model": weights, "optimizer": opt,
            "data": {"format": o.data, "seq_len": int(o.seq_len), "seed": int(o.seed),
                     "epoch": int(position[0]), "sequence": int(position[1])},
            "rng": torch.get_rng_state()}
    name = f"ckpt-{step:08d}.pt"
    file = os.path.join(save_dir, name)
    _write_atomically(file, lambda f: torch.save(root, f))
    _write_atomically(os.path.join(save_dir, "latest"), lambda f: f.write((name + "\n").encode()))
    return file


def check_save_dir(save_dir):
    try:
        os.makedirs(save_dir, exist_ok=True)
        probe = os.path.join(save_dir, ".lightring-write-test")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise UsageError(f"--save-dir: cannot write in '{save_dir}': {e.strerror or e}")


def read_checkpoint(path, model, o):
    """Checks a checkpoint against this run (every difference listed) and returns it; applies
    nothing."""
    try:
        file = _resolve(path)
    except FileNotFoundError as e:
        raise UsageError(f"--resume: {e}")
    size = os.path.getsize(file)
    try:
        ckpt = torch.load(file, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise UsageError(f"checkpoint {file} ({size} bytes) is not readable: truncated or "
                         f"corrupt ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    bad = f"checkpoint {file}: "
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(bad + f"not a {CHECKPOINT_FORMAT} checkpoint")
    for key in ("step", "config", "model", "optimizer", "data", "rng"):
        if key not in ckpt:
            raise UsageError(bad + f"no '{key}' entry")
    diff = []
    saved = ckpt["config"]
    for key, value in config_dict(model.config).items():
        if key not in saved:
            diff.append(f"{key}: missing in the checkpoint")
        elif key != "preset" and saved[key] != value:
            diff.append(f"{key}: {saved[key]!r} in the checkpoint, {value!r} in this run")
    data = ckpt["data"]
    if data.get("format") != o.data:
        diff.append(f"--data: '{data.get('format')}' in the checkpoint, '{o.data}' in this run")
    if data.get("seq_len") != o.seq_len:
        diff.append(f"--seq-len: {data.get('seq_len')} in the checkpoint, {o.seq_len} in this run")
    if diff:
        raise UsageError(bad + f"does not match this run (preset '{saved.get('preset', '?')}' "
                         f"there, '{model.config.preset}' here):\n  " + "\n  ".join(diff))
    for n, p in model.named_parameters():
        w = ckpt["model"].get(n)
        if w is None:
            raise UsageError(bad + f"no weight '{n}'")
        if tuple(w.shape) != tuple(p.shape):
            raise UsageError(bad + f"weight '{n}' is {list(w.shape)}, the model's is "
                             f"{list(p.shape)}")
        s = ckpt["optimizer"].get(n)
        if s is not None and any(k not in s or tuple(s[k].shape) != tuple(p.shape)
                                 for k in ("exp_avg", "exp_avg_sq")):
            raise UsageError(bad + f"optimizer state of '{n}' is missing or misshapen")
    return file, ckpt


def apply_checkpoint(ckpt, model, optimizer):
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(ckpt["model"][n])
    optimizer.state.clear()
    for n, p in model.named_parameters():
        s = ckpt["optimizer"].get(n)
        if s is None:
            continue
        optimizer.state[p] = {"step": torch.tensor(float(s["step"])),
                              "exp_avg": s["exp_avg"].to(p.device, p.dtype).clone(),
                              "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).clone()}
    torch.set_rng_state(ckpt["rng"])
