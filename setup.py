"""Builds lightring._C with the project's CMake (target lightring_python) and
places it inside the lightring package. Metadata is in pyproject.toml.

Environment:
  LIGHTRING_CMAKE_ARGS   extra configure arguments, e.g. "-DCMAKE_CUDA_ARCHITECTURES=90a"
  LIGHTRING_BUILD_JOBS   parallel build jobs (default: all cores)
  LIGHTRING_PIP_BUILD    CMake build directory (default: <repo>/build-pip)
"""
import glob
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        build_dir = os.environ.get("LIGHTRING_PIP_BUILD", os.path.join(ROOT, "build-pip"))
        configure = ["cmake", "-S", ROOT, "-B", build_dir, f"-DPython_EXECUTABLE={sys.executable}",
                     "-DLIGHTRING_TESTS=OFF", "-DCMAKE_BUILD_TYPE=Release"]
        if shutil.which("ninja") and not os.path.exists(os.path.join(build_dir, "CMakeCache.txt")):
            configure += ["-G", "Ninja"]
        configure += shlex.split(os.environ.get("LIGHTRING_CMAKE_ARGS", ""))
        subprocess.check_call(configure)
        jobs = os.environ.get("LIGHTRING_BUILD_JOBS", str(os.cpu_count() or 1))
        subprocess.check_call(["cmake", "--build", build_dir, "--target", "lightring_python",
                               "-j", jobs])
        built = glob.glob(os.path.join(build_dir, "csrc", "_C*.so"))
        if len(built) != 1:
            raise RuntimeError(f"expected one built _C*.so under {build_dir}/csrc, found {built} "
                               "(was torch found? see the CMake output above)")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(built[0], target)


setup(ext_modules=[Extension("lightring._C", sources=[])],
      cmdclass={"build_ext": CMakeBuild},
      options={"build": {"build_base": os.path.join("build-pip", "setuptools")}})
