"""Issue 19's acceptance, measured: the fixture model served by the bundled Triton server (python flavour,
ONNX Runtime inside) on this machine, loopback only.

1. Parity: the whole fixture val set predicted through the server and in process (ORT, same file):
   detections matched one-to-one (evaluation.parity) and COCO bbox/segm AP of both.
2. Load: 1, 4 and 16 concurrent clients x --requests each (16 x 50 by default), every answer checked
   against the single-client answer of the same image; latency p50/p90/p99, throughput, failures,
   beside the same model in this process one image at a time (the serving overhead at 1 client).

    python benchmarks/triton_serving.py --work /tmp/bench_triton --requests 50 --json benchmarks/triton.json

Prints Markdown on stdout (progress on stderr). Run it alone: the client, the server and the model
share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def export_fixture(work: Path) -> Path:
    from instseg_deploy.demo_data import DEMO_DATA
    from instseg_deploy.export.onnx_export import export_onnx
    from instseg_deploy.runtime.torch_model import load_model

    onnx = work / "fixture.onnx"
    if not onnx.is_file():
        log("exporting the fixture model")
        net, cfg = load_model(DEMO_DATA / "shapes_r50" / "config.yaml", DEMO_DATA / "shapes_r50" / "model_final.pkl")
        export_onnx(net, cfg, onnx)
    return onnx


def parity(address, onnx: Path) -> dict:
    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.demo_data import DEMO_DATA
    from instseg_deploy.evaluation.dataset_ap import dataset_ap
    from instseg_deploy.evaluation.parity import match_detections
    from instseg_deploy.image_io import read_image
    from instseg_deploy.runtime.factory import load_predictor
    from instseg_deploy.runtime.triton.client import load_triton_predictor

    val = DEMO_DATA / "shapes_val"
    dataset = load_coco_dataset(val / "images", val / "annotations.json")
    served = load_triton_predictor(address, score_thresh=None)
    local = load_predictor("ort", model=onnx, score_thresh=None)
    for predictor in (served, local):
        predictor.mask_format = "rle"
    log(f"parity: {len(dataset.images)} images through the server and in process")
    ap = {name: dataset_ap(p, dataset).ap() for name, p in (("server", served), ("in-process ort", local))}
    reports = [match_detections(local(image), served(image))
               for image in (read_image(record.path)[0] for record in dataset.images)]
    larger = sum(max(r.num_reference, r.num_candidate) for r in reports)  # as MatchReport.match_rate counts
    matched = sum(r.matched for r in reports)
    return {"images": len(dataset.images), "detections in process": sum(r.num_reference for r in reports),
            "detections served": sum(r.num_candidate for r in reports), "matched": matched,
            "match rate": matched / max(larger, 1), "min mask IoU": min(r.min_mask_iou for r in reports), "AP": ap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_triton"))
    parser.add_argument("--requests", type=int, default=50, help="requests per client and level")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads of each server instance and of "
                        "the in-process run (0: ONNX Runtime's default, every core)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from instseg_deploy.bench.machine import cpu_line, machine_info
    from instseg_deploy.bench.serving import ServerBenchRequest, markdown_table, run_server_bench
    from instseg_deploy.demo_data import DEMO_DATA
    from instseg_deploy.runtime.triton.client import ServerAddress
    from instseg_deploy.serving.triton.repository import RepositoryRequest, write_repository
    from instseg_deploy.serving.triton.server import ServerSettings, TritonServer, free_port

    args.work.mkdir(parents=True, exist_ok=True)
    onnx = export_fixture(args.work)
    repository = write_repository(RepositoryRequest(onnx, args.work / "repo", instances=args.instances,
                                                    max_batch=args.max_batch, threads=args.threads))
    settings = ServerSettings(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())
    machine = machine_info()
    with TritonServer(repository, settings, args.work / "cache", args.work / "server.log") as server:
        address = ServerAddress(server.http_url, timeout_s=300)
        same = parity(address, onnx)
        levels = tuple(int(c) for c in args.concurrency.split(","))
        request = ServerBenchRequest(url=server.http_url, concurrencies=levels, requests=args.requests,
                                     images=DEMO_DATA / "shapes_val" / "images", compare_model=onnx, timeout_s=300,
                                     threads=args.threads)
        result = run_server_bench(request, on_message=log)
    table = markdown_table(([result.in_process] if result.in_process else []) + result.levels)
    print(f"Machine: {cpu_line(machine)}\n")
    print(f"Parity ({same['images']} val images): {same['matched']}/{same['detections in process']} in-process "
          f"detections matched one-to-one ({100 * same['match rate']:.2f}%), {same['detections served']} served; "
          f"min mask IoU {same['min mask IoU']:.4f}")
    for name, ap in same["AP"].items():
        print(f"- {name}: bbox AP {ap['bbox']:.2f}, segm AP {ap['segm']:.2f}")
    print(f"\nLoad ({args.instances} instance(s) x {args.threads or 'default'} thread(s), max batch {args.max_batch}; "
          f"{len(list((DEMO_DATA / 'shapes_val' / 'images').iterdir()))} val images in turn):\n")
    print(table)
    print(f"Serving overhead at 1 client: {100 * result.overhead():+.1f}% p50 latency over in-process")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "parity": same, "rows": result.rows(),
                                         "overhead": result.overhead()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
