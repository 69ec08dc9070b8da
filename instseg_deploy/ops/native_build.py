"""Builds the RoIAlign CPU twin (plugins/src) into a shared library with g++, once per source version.

The library lands in a cache folder named after a hash of its sources and flags, so an edited
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

PLUGIN_SRC = Path(__file__).resolve().parents[2] / "plugins" / "src"
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

LIBRARY_ENV = "INSTSEG_ROI_ALIGN_TWIN_LIB"  # use a prebuilt library (e.g. from CMake) instead
CACHE_ENV = "INSTSEG_DEPLOY_CACHE"


class NativeBuildError(RuntimeError):
    """The CPU twin could not be compiled."""


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "instseg-deploy"


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def _source_digest(cxx: str) -> str:
    digest = hashlib.sha256()
    digest.update(" ".join((os.path.basename(cxx),) + CXX_FLAGS).encode())
    for name in TWIN_FILES:
        digest.update(name.encode())
        digest.update((PLUGIN_SRC / name).read_bytes())
    return digest.hexdigest()[:16]


def twin_library_path() -> Path:
    """Path of the CPU twin library, compiling it first if this source version has none yet."""
    if os.environ.get(LIBRARY_ENV):
        return Path(os.environ[LIBRARY_ENV])
    cxx = compiler()
    if cxx is None:
        raise NativeBuildError("no C++ compiler (g++ or $CXX) found to build the RoIAlign CPU twin")
    if not (PLUGIN_SRC / TWIN_FILES[0]).is_file():
        raise NativeBuildError(f"RoIAlign sources not found under {PLUGIN_SRC}; use a source checkout "
                               f"or set {LIBRARY_ENV}")
    out_dir = cache_root() / f"roi_align_twin-{_source_digest(cxx)}"
    target = out_dir / TWIN_LIBRARY_NAME
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():  # another process may have built it while we waited
            _compile(cxx, out_dir, target)
    return target


def _compile(cxx: str, out_dir: Path, target: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    cmd = [cxx, *CXX_FLAGS, "-I", str(PLUGIN_SRC), str(PLUGIN_SRC / TWIN_FILES[0]), "-o", tmp_name]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        os.unlink(tmp_name)
        raise NativeBuildError(f"building the RoIAlign CPU twin failed:\n{' '.join(cmd)}\n{result.stderr}")
    os.replace(tmp_name, target)  # atomic: readers never see a half-written library
