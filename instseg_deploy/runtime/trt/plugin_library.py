"""Finding and loading our TensorRT plugin library (``libinstseg_plugins.so``, see plugins/README.md).

The plugin-flavoured ONNX export has one RoIAlign node per pooler (``ops.roi_align_contract``); TensorRT's
ONNX parser and runtime find its creator in the plugin registry, so the library must be loaded
before parsing and before deserialising an engine that contains the plugin. Where to look, in
order: an explicit path (``--plugin-lib``), the ``INSTSEG_PLUGIN_LIB`` environment variable, the path an
engine's sidecar recorded, then ``plugins/build/libinstseg_plugins.so`` under the working directory
(where the build command, run in a checkout, puts it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instseg_deploy.errors import InstsegError
from instseg_deploy.ops.roi_align_contract import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION

LIBRARY_NAME = "libinstseg_plugins.so"
PLUGIN_ENV = "INSTSEG_PLUGIN_LIB"
# Relative to the working directory: where BUILD_COMMAND, run in a checkout, puts the library. An
# installed wheel has no plugins/ folder, so it is never looked up through the package's own path.
DEFAULT_LIBRARY = Path("plugins") / "build" / LIBRARY_NAME
BUILD_COMMAND = ("cmake -S plugins -B plugins/build -DTENSORRT_ROOT=/path/to/TensorRT-10 "
                 "-DCMAKE_CUDA_ARCHITECTURES=\"80;86;89;90\" && cmake --build plugins/build -j")


class PluginLibraryError(InstsegError):
    """The plugin library cannot be found or loaded."""


@dataclass(frozen=True)
class PluginLibrary:
    path: Path
    source: str  # how it was found: "--plugin-lib", "INSTSEG_PLUGIN_LIB", "plugins/build" or "engine sidecar"


def find_plugin_library(explicit: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
                        default: Path = DEFAULT_LIBRARY, recorded: str | os.PathLike | None = None) -> PluginLibrary:
    """The plugin library to load, or a :class:`PluginLibraryError` saying what was tried and how to build it.

    An explicit path or the environment variable that points at a missing file is an error of its
    own (a typo should not silently fall through to another library). ``recorded``: the path an
    engine's sidecar remembers, tried after the environment variable and before the default.
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
    if recorded is not None and Path(recorded).is_file():
        return PluginLibrary(Path(recorded).resolve(), "engine sidecar")
    if default.is_file():
        return PluginLibrary(default.resolve(), "plugins/build")
    tried = f"{recorded}, " if recorded is not None else ""
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

