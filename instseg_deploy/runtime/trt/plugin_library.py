"""Finding and loading our TensorRT plugin library (``libinstseg_plugins.so``, see plugins/README.md).

The plugin-flavoured ONNX export has one RoIAlign node per pooler (``ops.roi_align_contract``); TensorRT's
ONNX parser and runtime find its creator in the plugin registry, so the library must be loaded
before parsing and before deserialising an engine that contains the plugin.

Loading a library runs its code, so it comes only from places the user chose. In order:

1. an explicit path (``--plugin-lib``), then the ``INSTSEG_PLUGIN_LIB`` environment variable;
2. the library an engine's sidecar names (``plugin_library.path``, ``.sha256``), but only when it is
   our own build (below) or a copy of that name next to the engine, in the same folder, whose
   SHA-256 is the one the sidecar records. A sidecar naming any other existing file, or a copy
   next to the engine with another or no recorded SHA-256, is refused with the reason: the
   sidecar is a file anyone can edit, and its own fields cannot vouch for the library;
3. ``plugins/build/libinstseg_plugins.so`` under the working directory (``DEFAULT_LIBRARY``, where
   the build command, run in a checkout, puts it).

cpp/src/sidecar_check.cpp ``choose_plugin_library`` applies the same rule, with the same messages,
in the C++ runtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.sidecar import file_sha256, sidecar_path
from instseg_deploy.ops.roi_align_contract import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION

LIBRARY_NAME = "libinstseg_plugins.so"
PLUGIN_ENV = "INSTSEG_PLUGIN_LIB"
# Relative to the working directory: where BUILD_COMMAND, run in a checkout, puts the library. An
# installed wheel has no plugins/ folder, so it is never looked up through the package's own path.
DEFAULT_LIBRARY = Path("plugins") / "build" / LIBRARY_NAME
BUILD_COMMAND = ("cmake -S plugins -B plugins/build -DTENSORRT_ROOT=/path/to/TensorRT-10 "
                 "-DCMAKE_CUDA_ARCHITECTURES=\"80;86;89;90\" && cmake --build plugins/build -j")


class PluginLibraryError(InstsegError):
    """The plugin library cannot be found or loaded, or is not one this process may load."""


@dataclass(frozen=True)
class PluginLibrary:
    path: Path
    source: str  # how it was found: "--plugin-lib", "INSTSEG_PLUGIN_LIB", "plugins/build" or "next to the engine"


@dataclass(frozen=True)
class RecordedLibrary:
    """The plugin library an engine's sidecar names: its path at build time and its SHA-256 (None: not recorded)."""

    engine: Path
    path: Path
    sha256: str | None


def recorded_library(sidecar: dict[str, Any], engine: str | os.PathLike) -> RecordedLibrary | None:
    """The sidecar's ``plugin_library`` record, or None when it names no library (fields of the wrong type count
    as absent: a hand-edited sidecar must not turn into a crash)."""
    plugin = sidecar.get("plugin_library")
    if not isinstance(plugin, dict) or not isinstance(plugin.get("path"), str) or not plugin["path"]:
        return None
    sha256 = plugin.get("sha256")
    return RecordedLibrary(Path(engine), Path(plugin["path"]), sha256 if isinstance(sha256, str) and sha256 else None)


def _same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and os.path.samefile(a, b)


def _refuse(recorded: RecordedLibrary, path: Path, reason: str, default: Path) -> PluginLibraryError:
    return PluginLibraryError(
        f"refusing to load {path}, the plugin library {sidecar_path(recorded.engine).name} names: {reason} (an "
        f"engine's sidecar may only point at {default} under the working directory, or at a copy next to the engine "
        f"whose SHA-256 it records); pass --plugin-lib PATH or set {PLUGIN_ENV} to the library to load")


def _from_sidecar(recorded: RecordedLibrary, default: Path) -> PluginLibrary | None:
    """The sidecar's library where the rule allows it, None where it names nothing that exists; raises a refusal."""
    if _same_file(recorded.path, default):
        return PluginLibrary(default.resolve(), "plugins/build")
    beside = recorded.engine.parent / recorded.path.name
    if recorded.path.name and beside.is_file():
        if recorded.sha256 is None:
            raise _refuse(recorded, beside, "the sidecar records no SHA-256 for it", default)
        actual = file_sha256(beside)
        if actual != recorded.sha256:
            raise _refuse(recorded, beside, f"its SHA-256 is {actual}, not the {recorded.sha256} the sidecar records",
                          default)
        return PluginLibrary(beside.resolve(), "next to the engine")
    if recorded.path.is_file():
        raise _refuse(recorded, recorded.path, "it is neither our own build nor next to the engine", default)
    return None


def find_plugin_library(explicit: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                        default: Path = DEFAULT_LIBRARY, recorded: RecordedLibrary | None = None) -> PluginLibrary:
    """The plugin library to load by the rule of the module docstring, or a :class:`PluginLibraryError`.

    An explicit path or the environment variable that points at a missing file is an error of its
    own (a typo should not silently fall through to another library). ``recorded``: what an
    engine's sidecar names (:func:`recorded_library`), considered after the environment variable
    and before ``default``; a name the rule does not allow is refused, not skipped.
    """
    env = os.environ if env is None else env
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise PluginLibraryError(f"--plugin-lib {path} does not exist")
        return PluginLibrary(path.resolve(), "--plugin-lib")
    if env.get(PLUGIN_ENV):
        path = Path(env[PLUGIN_ENV])
        if not path.is_file():
            raise PluginLibraryError(f"{PLUGIN_ENV}={path} does not exist")
        return PluginLibrary(path.resolve(), PLUGIN_ENV)
    if recorded is not None and (library := _from_sidecar(recorded, default)) is not None:
        return library
    if default.is_file():
        return PluginLibrary(default.resolve(), "plugins/build")
    tried = f"{recorded.engine.parent / recorded.path.name}, " if recorded is not None and recorded.path.name else ""
    raise PluginLibraryError(
        f"the TensorRT plugin library {LIBRARY_NAME} was not found (tried --plugin-lib, ${PLUGIN_ENV}, {tried}"
        f"{default}); build it with: {BUILD_COMMAND} (or export with --roi-align onnx, which needs no plugin)")


def describe_plugin_library(env: Mapping[str, str] | None = None,
                            default: Path = DEFAULT_LIBRARY) -> tuple[Path | None, str]:
    """(path or None, one-line explanation) for `instseg doctor`."""
    try:
        lib = find_plugin_library(env=env, default=default)
    except PluginLibraryError as e:
        return None, str(e)
    return lib.path, f"{lib.path} (from {lib.source})"


def load_plugin_library(trt: Any, library: PluginLibrary) -> None:
    """Register the library's plugin creators in TensorRT's global registry (once per process).

    ``IPluginRegistry.load_library`` returns None when loading fails, including when a creator
    of the library is already registered, so an already-present creator is checked first.
    """
    registry = trt.get_plugin_registry()
    if registry.get_creator(OP_TYPE, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None:
        return
    handle = registry.load_library(str(library.path))
    if handle is None:
        raise PluginLibraryError(f"TensorRT could not load the plugin library {library.path} (built against "
                                 "another TensorRT version? see the TensorRT log above)")
    if registry.get_creator(OP_TYPE, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None:
        raise PluginLibraryError(f"{library.path} loaded but registers no {OP_TYPE} v{PLUGIN_VERSION} creator; "
                                 f"rebuild it from plugins/ ({BUILD_COMMAND})")
