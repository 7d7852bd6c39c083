"""Finds and loads the native extension ``lightring._C``.

Loading it registers the ops ``torch.ops.lightring.{forward,backward,local_state}`` and
``torch.ops.lightring.attention`` (the C++ autograd Function, csrc/attention_op.cpp).
Search order (the first hit wins):

1. ``$LIGHTRING_EXTENSION``: the path of a built ``_C*.so``;
2. ``$LIGHTRING_BUILD_DIR``: a CMake build directory (``<dir>/csrc/_C*.so``);
3. next to this file (``pip install .`` puts it there);
4. the CMake build trees of the source checkout this file lives in
   (``<repo>/build*/csrc/_C*.so``), the most recently built first.

So ``PYTHONPATH=<repo>/python`` is enough after ``cmake --build build``.
"""
import glob
import importlib.util
import os
import sys

import torch

_PATTERN = "_C*.so"
MODULE = None  # the loaded extension


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    explicit = os.environ.get("LIGHTRING_EXTENSION")
    if explicit:
        return [explicit]
    build_dir = os.environ.get("LIGHTRING_BUILD_DIR")
    if build_dir:
        return sorted(glob.glob(os.path.join(build_dir, "csrc", _PATTERN)))
    found = sorted(glob.glob(os.path.join(here, _PATTERN)))
    repo = os.path.dirname(os.path.dirname(here))
    trees = glob.glob(os.path.join(repo, "build*", "csrc", _PATTERN))
    found += sorted(trees, key=os.path.getmtime, reverse=True)
    return found


def _torch_release(version):
    return ".".join(version.split("+")[0].split(".")[:2])


def load():
    global MODULE
    name = "lightring._C"
    if MODULE is not None:
        return MODULE
    paths = _candidates()
    if not paths:
        raise ImportError(
            "lightring: the native extension _C was not found. Build it with "
            "`cmake -S . -B build -DPython_EXECUTABLE=$(which python3) && cmake --build build "
            "--target lightring_python`, or `pip install --no-build-isolation .`; or point "
            "LIGHTRING_BUILD_DIR at a build directory")
    path = paths[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    built, running = _torch_release(module.torch_version), _torch_release(torch.__version__)
    if built != running:
        raise ImportError(
            f"lightring: {path} was built against torch {module.torch_version} but torch "
            f"{torch.__version__} is imported; rebuild it with this Python's torch")
    sys.modules[name] = module
    MODULE = module
    return module
