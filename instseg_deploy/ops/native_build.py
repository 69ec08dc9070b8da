"""Builds the native libraries from the sources in ``csrc/`` (package data, so an installed wheel
has them too), once per source version: the RoIAlign CPU twin and the mask pasting library with g++
and, on a machine with a GPU, the RoIAlign CUDA kernel with nvcc. The TensorRT plugin
(plugins/CMakeLists.txt) compiles the same RoIAlign files.

Each library lands in a cache folder named after a hash of its sources and flags, so an edited
kernel rebuilds itself and a fresh clone needs no separate build step. A file lock keeps
concurrent test processes from compiling over each other.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from instseg_deploy.errors import InstsegError

NATIVE_SRC = Path(__file__).resolve().parent / "csrc"
TWIN_LIBRARY_NAME = "libinstseg_roi_align_cpu.so"
# Everything the twin's translation unit includes: a change to any of them means a rebuild.
TWIN_FILES = (
    "multilevel_roi_align_cpu.cpp",
    "multilevel_roi_align_cpu.h",
    "roi_align_math.h",
    "pooler_config.h",
    "roi_align_status.h",
    "half_host.h",
)
# No -ffast-math and no -march: the twin must round like torchvision's reference build.
CXX_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden")

CUDA_LIBRARY_NAME = "libinstseg_roi_align_cuda.so"
# The kernel's translation unit: the twin's shared math plus its own files.
CUDA_FILES = ("multilevel_roi_align_kernel.cu", "multilevel_roi_align_kernel.h", "roi_align_math.h",
              "pooler_config.h", "roi_align_status.h")
NVCC_FLAGS = ("-std=c++17", "-O3", "-shared", "-Xcompiler", "-fPIC")

# Mask pasting + RLE (processing.masks' fast path): bit for bit the numpy reference, hence no FMA contraction.
MASK_LIBRARY_NAME = "libinstseg_mask_paste.so"
MASK_FILES = ("mask_paste.cpp",)
MASK_CXX_FLAGS = CXX_FLAGS + ("-O3", "-ffp-contract=off")  # -O3 after -O2: vectorised loops

LIBRARY_ENV = "INSTSEG_ROI_ALIGN_TWIN_LIB"  # use a prebuilt library (e.g. from CMake) instead
CACHE_ENV = "INSTSEG_DEPLOY_CACHE"


class NativeBuildError(InstsegError):
    """A RoIAlign library (the CPU twin, the CUDA kernel) could not be compiled: no compiler, or it failed."""


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "instseg-deploy"


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _source_digest(flags: tuple[str, ...], files: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    digest.update(" ".join(flags).encode())
    for name in files:
        digest.update(name.encode())
        digest.update((NATIVE_SRC / name).read_bytes())
    return digest.hexdigest()[:16]


def _check_sources(files: tuple[str, ...]) -> None:
    if not (NATIVE_SRC / files[0]).is_file():
        raise NativeBuildError(f"{files[0]} not found under {NATIVE_SRC} (an incomplete install?); "
                               f"reinstall instseg-deploy or set {LIBRARY_ENV} to a prebuilt library")


def twin_library_path() -> Path:
    """Path of the CPU twin library, compiling it first if this source version has none yet."""
    if os.environ.get(LIBRARY_ENV):
        return Path(os.environ[LIBRARY_ENV])
    return _cpu_library("roi_align_twin", TWIN_LIBRARY_NAME, TWIN_FILES, CXX_FLAGS, "the RoIAlign CPU twin")


def mask_library_path() -> Path:
    """Path of the mask pasting library (C ABI ``instseg_paste_mask_rle``), compiling it first if needed."""
    return _cpu_library("mask_paste", MASK_LIBRARY_NAME, MASK_FILES, MASK_CXX_FLAGS, "the mask pasting library")


def _cpu_library(stem: str, name: str, files: tuple[str, ...], cxx_flags: tuple[str, ...], what: str) -> Path:
    """``name`` built with g++ from ``files`` (the first is the translation unit) into a cache folder of its
    source version."""
    cxx = compiler()
    if cxx is None:
        raise NativeBuildError(f"no C++ compiler (g++ or $CXX) found to build {what}")
    _check_sources(files)
    flags = (os.path.basename(cxx),) + cxx_flags
    out_dir = cache_root() / f"{stem}-{_source_digest(flags, files)}"
    return _build_once(out_dir / name,
                       lambda out: [cxx, *cxx_flags, "-I", str(NATIVE_SRC), str(NATIVE_SRC / files[0]), "-o", out])


def cuda_library_path(arch: str) -> Path:
    """Path of the CUDA kernel library (C ABI ``instseg_multilevel_roi_align_cuda``) built for ``arch``
    (e.g. ``sm_90``), compiling it with nvcc first if this source version has none yet."""
    nvcc = shutil.which(os.environ.get("NVCC", "nvcc"))
    if nvcc is None:
        raise NativeBuildError("nvcc not found (install the CUDA toolkit or set $NVCC) to build the RoIAlign kernel")
    _check_sources(CUDA_FILES)
    flags = NVCC_FLAGS + (f"-arch={arch}",)
    out_dir = cache_root() / f"roi_align_cuda-{_source_digest(flags, CUDA_FILES)}"
    return _build_once(out_dir / CUDA_LIBRARY_NAME,
                       lambda out: [nvcc, *flags, "-I", str(NATIVE_SRC), str(NATIVE_SRC / CUDA_FILES[0]), "-o", out])


def _build_once(target: Path, command) -> Path:
    """``target``, built by running ``command(temporary_path)`` unless it exists."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():  # another process may have built it while we waited
            _compile(command, target)
    return target


def _compile(command, target: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = command(tmp_name)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        os.unlink(tmp_name)
        raise NativeBuildError(f"building {target.name} failed:\n{' '.join(cmd)}\n{result.stderr}")
    os.replace(tmp_name, target)  # atomic: readers never see a half-written library
