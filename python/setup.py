"""Builds libmodelstream with the repository's Makefile and puts it in the package.

`pip install ./python` and `make wheel` both come here. The library is built from the
checkout this directory sits in (../), or taken from $MODELSTREAM_BUILD if it names a
build directory that has one; the wheel is tagged for this platform, since it carries a
native library.
"""

import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools before 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


class BuildWithLibrary(build_py):
    def run(self):
        build = os.environ.get("MODELSTREAM_BUILD") or os.path.join(REPO, "build")
        lib = os.path.join(build, "libmodelstream.so.1")
        if not os.path.exists(lib):
            subprocess.check_call(["make", "-C", REPO, "-j", str(os.cpu_count() or 2), "lib"])
        out = os.path.join(HERE, "modelstream", "_lib")
        os.makedirs(out, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), os.path.join(out, "libmodelstream.so.1"))
        super().run()


class AnyPythonWheel(bdist_wheel):
    """py3-none-<platform>: the binding is ctypes, so one wheel serves every Python 3."""

    def get_tag(self):
        return ("py3", "none", super().get_tag()[2])


class NativeDistribution(Distribution):
    def has_ext_modules(self):
        return True  # a platform wheel: it carries libmodelstream.so


setup(cmdclass={"build_py": BuildWithLibrary, "bdist_wheel": AnyPythonWheel},
      distclass=NativeDistribution)
