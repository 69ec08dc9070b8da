"""Builds of plugins/: the CUDA kernel with nvcc, the CPU twin with CMake, the TensorRT plugin library.

No GPU is needed: these compile and check on the host. The TensorRT build runs only where
TENSORRT_ROOT points at a TensorRT 10 install (headers are never part of this repository).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from instseg_deploy.ops.native_build import NATIVE_SRC

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
NVCC = shutil.which("nvcc")
CMAKE = shutil.which("cmake")
CUDA_ARCH = "80"  # one architecture keeps the compile short


def _tensorrt_root() -> str | None:
    root = os.environ.get("TENSORRT_ROOT")
    return root if root and (Path(root) / "include" / "NvInferRuntime.h").is_file() else None


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    return result


def _cmake_build(build_dir: Path, *options: str) -> None:
    _run([CMAKE, "-S", str(PLUGINS), "-B", str(build_dir), *options])
    _run([CMAKE, "--build", str(build_dir), "-j", "2"])


@pytest.mark.skipif(NVCC is None, reason="nvcc not found: the CUDA kernel cannot be compiled here")
def test_nvcc_compiles_the_kernel(tmp_path):
    _run([NVCC, "-std=c++17", "-O3", f"-arch=sm_{CUDA_ARCH}", "-Xcompiler", "-Wall", "-I", str(NATIVE_SRC),
          "-c", str(NATIVE_SRC / "multilevel_roi_align_kernel.cu"), "-o", str(tmp_path / "kernel.o")])
    assert (tmp_path / "kernel.o").stat().st_size > 0


@pytest.mark.skipif(CMAKE is None, reason="cmake not found")
def test_cmake_builds_the_cpu_twin_without_tensorrt(tmp_path):
    build = tmp_path / "build"
    env_free = {k: v for k, v in os.environ.items() if k != "TENSORRT_ROOT"}
    _run([CMAKE, "-S", str(PLUGINS), "-B", str(build), "-DINSTSEG_BUILD_CUDA=OFF", "-DTENSORRT_ROOT="],
         env=env_free)
    _run([CMAKE, "--build", str(build), "-j", "2"])
    library = build / "libinstseg_roi_align_cpu.so"
    assert library.is_file() and not (build / "libinstseg_plugins.so").exists()
    # The CMake-built twin is a drop-in for the one the package builds itself.
    check = ("import numpy as np; from instseg_deploy.ops import multilevel_roi_align as f;"
             "r = np.array([[0, 8, 8, 120, 90]], np.float32);"
             "x = [np.ones((1, 2, 64 // s, 64 // s), np.float32) for s in (1, 2, 4, 8)];"
             "o = f(r, x, [4, 8, 16, 32], 7); assert o.shape == (1, 2, 7, 7) and np.allclose(o, 1.0), o")
    _run([sys.executable, "-c", check], env={**os.environ, "INSTSEG_ROI_ALIGN_TWIN_LIB": str(library)})


@pytest.mark.skipif(_tensorrt_root() is None,
                    reason="no TensorRT: set TENSORRT_ROOT to a TensorRT 10 install to build libinstseg_plugins.so")
@pytest.mark.skipif(NVCC is None, reason="nvcc not found: the TensorRT plugin needs the CUDA kernel")
@pytest.mark.skipif(CMAKE is None, reason="cmake not found")
def test_cmake_builds_the_tensorrt_plugin(tmp_path):
    build = tmp_path / "build"
    _cmake_build(build, f"-DTENSORRT_ROOT={_tensorrt_root()}", f"-DCMAKE_CUDA_ARCHITECTURES={CUDA_ARCH}")
    plugin = build / "libinstseg_plugins.so"
    assert plugin.is_file()
    # Loads it as TensorRT's loadLibrary would and drives the creator and plugin on the host.
    _run([str(build / "plugin_host_check"), str(plugin)])
