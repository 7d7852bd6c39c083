"""The C++ token mixer (token_mixer_dump) against lightring.nn.LightningAttention.

    python3 token_mixer_check.py DUMP.pt

Loads the dump's weights into lightring.nn.LightningAttention(d, H, layer_idx=1,
num_layers=3) (gate, SimpleRMSNorm, SiLU, slopes decay: the TransNormerLLM token mixer),
runs the dump's input and compares the output, the decay and the gradients of sum(y²) with
the C++ ones: every relative difference (max |a - b| / max |b|) must be below 1e-5.
Exit status 77 (ctest: skipped) when torch or the lightring package cannot be imported.
"""
import sys

try:
    import torch
    import lightring.nn
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)


def rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def main():
    d = torch.load(sys.argv[1])
    layer = lightring.nn.LightningAttention(d["d_model"], d["num_heads"], layer_idx=d["layer"],
                                            num_layers=d["num_layers"])
    with torch.no_grad():
        layer.qkvu_proj.weight.copy_(d["qkvu_proj.weight"])
        layer.out_proj.weight.copy_(d["out_proj.weight"])
    x = d["x"].clone().requires_grad_(True)
    y = layer(x)
    y.pow(2).sum().backward()
    errors = {
        "decay": rel(layer.decay, d["decay"]),
        "y": rel(y.detach(), d["y"]),
        "dx": rel(x.grad, d["dx"]),
        "d qkvu_proj": rel(layer.qkvu_proj.weight.grad, d["d_qkvu"]),
        "d out_proj": rel(layer.out_proj.weight.grad, d["d_out"]),
    }
    for name, err in errors.items():
        print(f"{name}: relative difference {err:.3g}")
    bad = [name for name, err in errors.items() if not err < 1e-5]
    if bad:
        print("FAILED: C++ and lightring.nn differ in " + ", ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
