"""Running the Triton server bundled in the PyPI wheel ``nvidia-pytriton`` on a model repository.

The wheel ships ``tritonserver``, its Python backend and one backend stub per Python version
(3.8-3.13). We run the binary directly (not through PyTriton's proxy) with a backend directory
holding the stub of *this* interpreter, and with this interpreter's own ``libpython`` first on
LD_LIBRARY_PATH: the stub links ``libpython3.X.so.1.0`` by name, and a system libpython of
another patch release beside this interpreter's standard library breaks inside ``threading``
(measured: pyenv 3.11.7 with Debian's 3.11.2 libpython). The stub's own libraries live in
``nvidia_pytriton.libs``, which its RPATH finds only from the wheel's folder, so that goes on the
path too.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from instseg_deploy.errors import ServingError

log = logging.getLogger(__name__)

INSTALL_HINT = ("pip install --no-deps nvidia-pytriton==0.7.0 'tritonclient[http,grpc]' (the wheel bundles "
                "tritonserver; --no-deps because it pins numpy<2, which this project does not need)")


@dataclass(frozen=True)
class ServerBinary:
    """The bundled server: its binary, Python backend folder, libraries and this Python's stub."""

    binary: Path
    python_backend: Path
    libraries: Path
    stub: Path


def find_bundled_server() -> ServerBinary:
    """The server bundled in nvidia-pytriton, for this Python; a clear error when it cannot run here."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ServingError(f"the Triton server is not installed: {INSTALL_HINT}")
    package = Path(list(spec.submodule_search_locations)[0])
    root = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = ServerBinary(root / "bin" / "tritonserver", root / "backends" / "python",
                         package.parent / "nvidia_pytriton.libs", root / "python_backend_stubs" / version /
                         "triton_python_backend_stub")
    for path in (found.binary, found.python_backend / "libtriton_python.so"):
        if not path.is_file():
            raise ServingError(f"the Triton server install is incomplete ({path} is missing): {INSTALL_HINT}")
    if not found.stub.is_file():
        raise ServingError(f"the bundled Triton server has no Python-backend stub for Python {version} "
                           "(it has 3.8-3.13)")
    return found


def libpython_dir() -> Path:
    """This interpreter's shared libpython's folder (the stub embeds it)."""
    libdir, soname = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libdir or not (Path(libdir) / soname).is_file():
        raise ServingError(f"this Python ({sys.executable}) has no shared libpython, which the Triton Python-backend "
                           "stub needs; use a Python built with --enable-shared (Debian's, or pyenv with "
                           "PYTHON_CONFIGURE_OPTS=--enable-shared)")
    return Path(libdir)


def backend_directory(server: ServerBinary, cache: Path) -> Path:
    """A Triton backend directory whose ``python`` backend uses this interpreter's stub."""
    folder = cache / f"backends-py{sys.version_info.major}{sys.version_info.minor}"
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    links = {"libtriton_python.so": server.python_backend / "libtriton_python.so",
             "triton_python_backend_utils.py": server.python_backend / "triton_python_backend_utils.py",
             "triton_python_backend_stub": server.stub}
    for name, target in links.items():
        link = python / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        temporary = python / f".{name}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target)
        temporary.replace(link)  # atomic: a server starting beside us never sees a missing file
    return folder


def check_port_free(host: str, port: int, option: str) -> None:
    """One clear error for a port another program holds (Triton would log it and exit)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServingError(f"cannot serve on {host}:{port} ({option}): {e.strerror or e}") from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (tests start servers on these)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    startup_timeout_s: float = 300.0
    exit_timeout_s: int = 10


class TritonServer:
    """A running bundled ``tritonserver`` (a context manager: stopped, with its stubs, on exit)."""

    def __init__(self, repository: Path, settings: ServerSettings, cache: Path, log_path: Path):
        self.repository, self.settings, self.log_path = Path(repository), settings, Path(log_path)
        self.server = find_bundled_server()
        self.backends = backend_directory(self.server, Path(cache))
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{self.settings.host}:{self.settings.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.settings.host}:{self.settings.grpc_port}"

    def command(self) -> list[str]:
        s = self.settings
        return [str(self.server.binary), f"--model-repository={self.repository}",
                f"--backend-directory={self.backends}", f"--http-address={s.host}", f"--http-port={s.http_port}",
                f"--grpc-address={s.host}", f"--grpc-port={s.grpc_port}", f"--metrics-address={s.host}",
                f"--metrics-port={s.metrics_port}", "--allow-cpu-metrics=true", "--allow-gpu-metrics=false",
                "--strict-readiness=true", f"--exit-timeout-secs={s.exit_timeout_s}", "--log-verbose=0",
                # explicit: reload() can restart a model whose Python-backend process died
                "--model-control-mode=explicit", "--load-model=*"]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        paths = [str(libpython_dir()), str(self.server.libraries)]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(paths + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep)
                                                          if p])
        return env

    def start(self) -> TritonServer:
        s = self.settings
        for port, option in ((s.http_port, "--http-port"), (s.grpc_port, "--grpc-port"),
                             (s.metrics_port, "--metrics-port")):
            check_port_free(s.host, port, option)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        parent = os.getpid()
        with open(self.log_path, "wb") as log_file:
            # Own process group: stop() ends the server and every stub it started, and the server dies
            # with us (die_with_parent) if we are killed without a chance to stop it.
            self.process = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.environment(),
                                            start_new_session=True, preexec_fn=lambda: _die_with(parent))
        log.info("tritonserver started (pid %d), log %s", self.process.pid, self.log_path)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Block until the server and every model in the repository are ready; fail with the log's reason."""
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                reason = self.failure_reason()
                self.stop()  # its Python-backend processes, if any started
                raise ServingError(f"tritonserver exited with code {self.process.returncode} while starting: "
                                   f"{reason} (log: {self.log_path})")
            if self.ready():
                return
            time.sleep(0.25)
        reason = self.failure_reason()
        self.stop()
        raise ServingError(f"tritonserver was not ready after {self.settings.startup_timeout_s:.0f} s: {reason} "
                           f"(log: {self.log_path})")

    def ready(self, timeout_s: float = 2.0) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=timeout_s) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stub_counts(self) -> dict[str, int]:
        """Live Python-backend processes of the server, by model name (from each stub's model path)."""
        counts: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            if ppid == self.process.pid and args[0].endswith(b"triton_python_backend_stub") and len(args) > 1:
                model = Path(args[1].decode(errors="replace")).parent.parent.name
                counts[model] = counts.get(model, 0) + 1
        return counts

    def reload(self, model: str) -> None:
        """Unload and load ``model`` (new Python-backend processes; a plain load of an unchanged model
        is a no-op for Triton)."""
        for action in ("unload", "load"):
            request = urllib.request.Request(f"http://{self.http_url}/v2/repository/models/{model}/{action}",
                                             data=b"{}", method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.settings.startup_timeout_s) as r:
                    r.read()
            except (urllib.error.URLError, OSError) as e:
                raise ServingError(f"reloading model {model!r} failed at {action}: {e}") from None

    def restart_dead_models(self, expected: dict[str, int]) -> list[str]:
        """Reload every model with fewer live Python-backend processes than ``expected`` (its instance
        count): Triton does not restart a stub that died (killed, out of memory). The models reloaded."""
        counts = self.stub_counts()
        dead = [model for model, n in expected.items() if counts.get(model, 0) < n]
        for model in dead:
            log.warning("model %s lost a Python-backend process: reloading it", model)
            self.reload(model)
        return dead

    def failure_reason(self) -> str:
        """The most telling line of the server's log (a model that failed to load says why)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        for marker in ("failed to load", "UNAVAILABLE", "Error", "error:"):
            found = [line.strip() for line in lines if marker in line]
            if found:
                return found[-1][:600]
        return lines[-1][:600] if lines else "empty log"

    def stop(self) -> None:
        """SIGTERM (Triton finishes in-flight requests), then SIGKILL to the whole group after the exit
        timeout: also when the server itself has died, whose Python-backend processes may live on."""
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=self.settings.exit_timeout_s + 5)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # stragglers: stubs outliving the server
            except ProcessLookupError:
                pass
            self.process.wait()

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with(parent: int) -> None:
    from instseg_deploy.lifetime import die_with_parent

    die_with_parent(parent)
