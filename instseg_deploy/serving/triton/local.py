"""`instseg serve`: an exported model served by the bundled Triton server from a cached repository."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

from instseg_deploy.model_file.sidecar import file_sha256
from instseg_deploy.serving.triton.repository import RepositoryRequest, write_repository
from instseg_deploy.serving.triton.server import ServerSettings, TritonServer


def serving_cache() -> Path:
    from instseg_deploy.ops.native_build import cache_root

    return cache_root() / "triton"


def cached_repository(request: RepositoryRequest) -> Path:
    """The python-flavour repository for ``request`` under the cache, written once per model file
    content and settings (``request.out`` is ignored)."""
    key = json.dumps({**asdict(replace(request, out=Path("."), model=Path("."))),
                      "model_sha256": file_sha256(request.model)}, sort_keys=True, default=str)
    out = serving_cache() / "repositories" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if not (out / request.name / "config.pbtxt").is_file():
        write_repository(replace(request, out=out, flavour="python"))
    return out


def local_server(request: RepositoryRequest, settings: ServerSettings) -> TritonServer:
    """A (not yet started) bundled server for ``request``'s model; use it as a context manager."""
    repository = cached_repository(request)
    return TritonServer(repository, settings, serving_cache(),
                        serving_cache() / "logs" / f"tritonserver-{settings.http_port}.log")
