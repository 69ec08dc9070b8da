"""`instseg serve`: serve an exported model over HTTP/gRPC with the Triton server bundled in nvidia-pytriton."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from instseg_deploy.cli.common import PrecisionOption, ThreadsOption, console, user_errors

EXAMPLES = """
Examples:

  instseg serve --model model.onnx

  instseg serve --model model.onnx --instances 2 --threads 1        (2 cores: the most images/s)

  instseg serve --model model.xml --backend openvino --http-port 9000 --grpc-port 9001 --metrics-port 9002

  instseg serve --model model.xml --precision f32     (OpenVINO f32 on a BF16 CPU too)

  instseg eval --backend triton --url 127.0.0.1:8000 --coco-root datasets/coco
"""


@user_errors
def serve(
    model: Path = typer.Option(..., "--model", "-m", help="Exported model: .onnx, OpenVINO IR .xml or TensorRT "
                               ".engine.", show_default=False),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help="Runtime inside the server: ort, openvino "
                                          "or trt (default: from the file: .onnx ort, .xml openvino, .engine trt)."),
    name: str = typer.Option("instseg", "--name", help="Model name clients ask for."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    http_port: int = typer.Option(8000, "--http-port"),
    grpc_port: int = typer.Option(8001, "--grpc-port"),
    metrics_port: int = typer.Option(8002, "--metrics-port", help="Prometheus metrics."),
    instances: int = typer.Option(1, "--instances", help="Model instances (processes) serving requests. On a CPU, "
                                  "--instances <cores> --threads 1 gave the most images/s (benchmarks/SERVING.md)."),
    max_batch: int = typer.Option(4, "--max-batch", help="Most requests one model call batches."),
    max_queue_delay_us: int = typer.Option(2000, "--max-queue-delay-us", help="How long a request may wait for "
                                           "others to batch with."),
    threads: int = ThreadsOption,
    precision: str = PrecisionOption,
) -> None:
    """Serve an exported model with Triton Inference Server until Ctrl-C."""
    from instseg_deploy.serving.triton.local import local_server
    from instseg_deploy.serving.triton.repository import RepositoryRequest
    from instseg_deploy.serving.triton.server import ServerSettings

    request = RepositoryRequest(model, Path("."), name=name, max_batch=max_batch, instances=instances,
                                max_queue_delay_us=max_queue_delay_us, backend=backend, threads=threads,
                                precision=precision)
    settings = ServerSettings(host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port)
    server = local_server(request, settings)
    console.print(f"starting Triton on {host} (repository {escape(str(server.repository))}) ...", highlight=False)
    try:
        with server:
            _print_ready(name, host, settings)
            while server.process.poll() is None:
                time.sleep(1.0)
                # Triton does not restart a Python-backend process that died (killed, out of memory)
                for restarted in server.restart_dead_models({name: instances}):
                    console.print(f"[yellow]restarted[/] model {escape(restarted)}: its Python-backend process "
                                  "had died", highlight=False)
            console.print(f"[red]tritonserver exited[/] (code {server.process.returncode}); log: "
                          f"{escape(str(server.log_path))}", highlight=False)
            raise typer.Exit(1)
    except KeyboardInterrupt:
        console.print("stopped", highlight=False)


def _print_ready(name: str, host: str, s) -> None:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    typer.echo(f"ready: {name}\n"
               f"  HTTP     http://{shown}:{s.http_port}/v2/models/{name}\n"
               f"  gRPC     {shown}:{s.grpc_port}\n"
               f"  metrics  http://{shown}:{s.metrics_port}/metrics\n"
               f"try:\n"
               f"  curl http://{shown}:{s.http_port}/v2/models/{name}/config\n"
               f"  instseg predict photo.jpg --backend triton --url {shown}:{s.http_port} --out pred/\n"
               f"  python -c \"from instseg_deploy.runtime import load_predictor; "
               f"p = load_predictor('triton', url='{shown}:{s.http_port}'); print(p('photo.jpg'))\"\n"
               "Ctrl-C stops it.")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXAMPLES)(serve)
