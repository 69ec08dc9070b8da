"""An installed (non-editable) wheel works without the source tree.

The wheel must carry what the package reads at run time: the demo's example model and val set
(``instseg_deploy/demo_data``) and the RoIAlign sources that ``ops/native_build`` compiles on first
use (``instseg_deploy/ops/csrc``). The package must never reach out of itself (``parents[2]`` into
``tests/`` or ``plugins/``): that works in a checkout and breaks once installed.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from instseg_deploy.ops.native_build import CUDA_FILES, TWIN_FILES

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "instseg_deploy"
# What a wheel build reads from the checkout (pyproject's readme = README.md).
BUILD_INPUTS = ("pyproject.toml", "README.md")
LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (no stale build/ folder can leak into it)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools (the build backend) is not installed")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(PACKAGE, src / PACKAGE.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = root / "dist"
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path,) = out.glob("instseg_deploy-*.whl")
    return path


def _names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_carries_the_demo_model_and_val_set(wheel):
    names = _names(wheel)
    data = "instseg_deploy/demo_data"
    for name in ("shapes_r50/config.yaml", "shapes_r50/model_final.pkl", "shapes_val/annotations.json"):
        assert f"{data}/{name}" in names, name
    with zipfile.ZipFile(wheel) as archive:
        annotations = json.loads(archive.read(f"{data}/shapes_val/annotations.json"))
    images = {f"{data}/shapes_val/images/{image['file_name']}" for image in annotations["images"]}
    assert len(images) == 100 and not images - names, sorted(images - names)[:5]


def test_wheel_carries_every_native_source_and_its_includes(wheel):
    names = _names(wheel)
    csrc = "instseg_deploy/ops/csrc"
    needed = set(TWIN_FILES) | set(CUDA_FILES)
    assert not {f"{csrc}/{n}" for n in needed} - names
    # Every local #include of those files is shipped too, or the first-use compile fails when installed.
    with zipfile.ZipFile(wheel) as archive:
        for name in needed:
            for include in LOCAL_INCLUDE.findall(archive.read(f"{csrc}/{name}").decode()):
                assert f"{csrc}/{include}" in names, f"{name} includes {include}, which the wheel lacks"


def test_wheel_holds_only_the_package(wheel):
    tops = {name.split("/", 1)[0] for name in _names(wheel)} - {"instseg_deploy"}
    assert len(tops) == 1 and tops.pop().endswith(".dist-info")


def test_installed_wheel_finds_its_data_and_compiles_the_twin(wheel, tmp_path):
    """Imported from a plain install in another folder: the demo data and the twin's sources come from there."""
    target = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q",
                             "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check = (
        "import sys, numpy as np\n"
        "import instseg_deploy\n"
        "from instseg_deploy.demo_data import DEMO_DATA\n"
        "from instseg_deploy.ops import multilevel_roi_align, native_build\n"
        "target = sys.argv[1]\n"
        "for path in (instseg_deploy.__file__, DEMO_DATA, native_build.NATIVE_SRC, native_build.twin_library_path()):\n"
        "    assert str(path).startswith(sys.argv[2]), (str(path), sys.argv[2])\n"
        "assert (DEMO_DATA / 'shapes_r50' / 'model_final.pkl').is_file()\n"
        "rois = np.array([[0, 8, 8, 120, 90]], np.float32)\n"
        "feats = [np.ones((1, 2, 64 // s, 64 // s), np.float32) for s in (1, 2, 4, 8)]\n"
        "out = multilevel_roi_align(rois, feats, [4, 8, 16, 32], 7)\n"
        "assert out.shape == (1, 2, 7, 7) and np.allclose(out, 1.0), out\n"
    )
    # The compiled twin must land in the cache, the sources come from the install: both under tmp_path.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "PYTHONPATH": str(target),
           "INSTSEG_DEPLOY_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", check, str(target), str(tmp_path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _climb(node: ast.AST) -> int | None:
    """How many folders ``node`` climbs from ``__file__`` (``Path(__file__)`` = 0, ``.parent`` = 1,
    ``.parents[k]`` = k + 1, ``os.path.dirname`` = 1 each), or None if it is not such a path."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "Path" and len(node.args) == 1:
            arg = node.args[0]
            return 0 if isinstance(arg, ast.Name) and arg.id == "__file__" else None
        if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute") and not node.args:
            return _climb(func.value)
        if (isinstance(func, (ast.Attribute, ast.Name)) and getattr(func, "attr", getattr(func, "id", "")) == "dirname"
                and len(node.args) == 1):
            arg = node.args[0]
            inner = 0 if isinstance(arg, ast.Name) and arg.id == "__file__" else _climb(arg)
            return None if inner is None else inner + 1
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        inner = _climb(node.value)
        return None if inner is None else inner + 1
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int)):
        inner = _climb(node.value.value)
        return None if inner is None else inner + node.slice.value + 1
    return None


def _escapes(path: Path, package: Path = PACKAGE) -> list[str]:
    """Lines of ``path`` (a module of ``package``) whose ``__file__``-relative paths leave the package."""
    allowed = len(path.relative_to(package).parts)  # climbs from the file up to the package folder itself
    lines = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        climb = _climb(node)
        if climb is not None and climb > allowed:
            lines.add(node.lineno)
    return [f"{path.relative_to(package.parent)}:{n}" for n in sorted(lines)]


def test_escape_check_sees_every_way_out_of_the_package(tmp_path):
    package = tmp_path / "pkg"
    (package / "cli").mkdir(parents=True)
    probe = package / "cli" / "probe.py"
    probe.write_text("import os\n"
                     "from pathlib import Path\n"
                     "IN = Path(__file__).resolve().parents[1] / 'demo_data'\n"
                     "OUT = Path(__file__).resolve().parents[2] / 'tests'\n"
                     "IN_TOO = Path(__file__).parent.parent\n"
                     "UP = Path(__file__).parent.parent.parent\n"
                     "MIXED = Path(__file__).parent.parents[1]\n"
                     "OLD = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))\n"
                     "OTHER = Path('x').parents[5]\n")
    assert _escapes(probe, package) == ["pkg/cli/probe.py:4", "pkg/cli/probe.py:6", "pkg/cli/probe.py:7",
                                        "pkg/cli/probe.py:8"]


def test_package_never_climbs_out_of_itself():
    found = [hit for path in sorted(PACKAGE.rglob("*.py")) for hit in _escapes(path)]
    assert not found, "paths out of the package break installed wheels:\n" + "\n".join(found)
