"""Builds the optional C++ fast path, `lstmbyhand.nn._C`, from src/lstmbyhand/nn/csrc/*.cpp.

Everything else about the package is in pyproject.toml. The extension compiles against the torch that
is already installed (install with --no-build-isolation, as scripts/setup.sh does), once, at install
time; an editable install places the .so beside the Python sources. If torch cannot be imported or the
compiler fails, a warning is printed and the install goes on without it: the library then uses the
PyTorch ops of bptt.py (see native.py).

Environment:
    LSTMBYHAND_BUILD_NATIVE=0      skip the extension
    LSTMBYHAND_NATIVE_ARCH=...     -march value (default "native": the build machine's vector units;
                                   set "" for a portable binary)
"""

from __future__ import annotations

import os
import sys
from glob import glob

from setuptools import setup


def _warn(message: str) -> None:
    print(f"lstmbyhand: {message}; falling back to the PyTorch ops", file=sys.stderr)


def native_build() -> tuple[list, dict]:
    """The extension and the build command, or nothing when it cannot be built here."""
    if os.environ.get("LSTMBYHAND_BUILD_NATIVE", "1") == "0":
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except Exception as err:  # noqa: BLE001 - any failure to import torch means: no extension
        _warn(f"torch not importable at build time ({err}); C++ fast path not built")
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        """BuildExtension that warns instead of failing: the fast path is optional."""

        def run(self) -> None:
            try:
                super().run()
            except Exception as err:  # noqa: BLE001
                _warn(f"C++ fast path not built ({err})")

        def build_extension(self, ext) -> None:
            try:
                super().build_extension(ext)
            except Exception as err:  # noqa: BLE001
                _warn(f"C++ fast path not built ({err})")

    arch = os.environ.get("LSTMBYHAND_NATIVE_ARCH", "native")
    flags = ["-O3", "-g0", "-fopenmp"] + ([f"-march={arch}"] if arch else [])
    sources = sorted(glob("src/lstmbyhand/nn/csrc/*.cpp"))
    # Link the shared libstdc++ that torch itself uses, by its soname. On the GPU machines' image
    # (g++ 13.3, torch 2.11) the default link put a static copy of libstdc++ into the extension
    # (3,204 exported std:: symbols instead of 37), and that copy's ostream crashed the process when
    # it formatted a number into an error message. Named by soname, it links dynamically everywhere.
    link = ["-fopenmp", "-l:libstdc++.so.6"]
    extension = CppExtension(
        "lstmbyhand.nn._C",
        sources,
        depends=sorted(glob("src/lstmbyhand/nn/csrc/*.h")),  # a changed header rebuilds
        extra_compile_args=flags,
        extra_link_args=link,
    )
    return [extension], {"build_ext": OptionalBuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = native_build()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
