"""`instseg bench` end to end on the tiny model: structure and sanity of what it reports (no timing thresholds)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from instseg_deploy.checkpoint.writer import save_checkpoint
from instseg_deploy.cli.main import app
from instseg_deploy.config import load_config
from instseg_deploy.modeling import build_model

runner = CliRunner()


def test_bench_torch_and_ort_rows(tmp_path, tiny_config_path):
    cfg = load_config(tiny_config_path)
    weights = tmp_path / "tiny.pth"
    save_checkpoint(weights, build_model(cfg.model), cfg.raw, ("disc", "square", "triangle", "ring"))
    out = tmp_path / "bench"
    result = runner.invoke(app, ["bench", "--backend", "torch,ort", "--weights", str(weights), "--size", "128x192",
                                 "--batch", "2", "--threads", "1", "--warmup", "1", "--iters", "2", "--rounds", "2",
                                 "--json", str(out / "b.json"), "--markdown", str(out / "b.md"),
                                 "--plot", str(out / "b.png")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "b.json").read_text())
    rows = report["rows"]
    assert [(r["label"], r["batch"], r["threads"]) for r in rows] == [("torch fp32", 2, 1), ("ort fp32", 2, 1)]
    assert report["peak_gflops_per_s"] > 0 and report["machine"]["cores"] >= 1
    assert report["input"] == "128x192 padded" and report["peak_source"].startswith("float32 sgemm")
    for row in rows:
        for key in ("end_to_end_ms", "model_ms"):
            s = row[key]
            assert 0 < s["p50"] <= s["p90"] <= s["p99"] and s["mean"] > 0
        assert row["images_per_s"] > 0 and row["startup_s"] > 0 and row["peak_rss_mb"] > 50
        assert row["gflops_per_image"] > 0 and 0 < row["percent_of_peak"]
        assert row["input_hw"] == [128, 192] and row["input_hws"] == [[128, 192]]
        assert row["rounds"] == 2 and len(row["round_p50_ms"]) == 2 and "end_to_end_s" not in row
    table = (out / "b.md").read_text()
    assert table.count("\n| ") == 1 + len(rows) and "% peak" in table
    assert (out / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_rejects_bad_requests(tmp_path):
    result = runner.invoke(app, ["bench", "--backend", "tensorflow"])
    assert result.exit_code != 0 and "unknown backend" in result.output
    result = runner.invoke(app, ["bench", "--backend", "torch"])
    assert result.exit_code != 0 and "needs --weights" in result.output
    result = runner.invoke(app, ["bench", "--backend", "ort", "--model", str(tmp_path / "none.onnx")])
    assert result.exit_code != 0 and "not found" in result.output


def _results_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "run_benchmarks.py"
    spec = importlib.util.spec_from_file_location("run_benchmarks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(written: str, e2e_p50: float, model_p50: float, cpu: str = "EPYC") -> dict:
    row = {"label": "ort fp32", "batch": 1, "threads": 2,
           "end_to_end_ms": {"p50": e2e_p50}, "model_ms": {"p50": model_p50}}
    section = {"input": "800x1344 padded", "rows": [row], "peak_gflops_per_s": 100.0}
    return {"written": written, "machine": {"cpu": cpu, "cores": 2, "torch": "2", "onnxruntime": "1"},
            "large": section, "small": {"input": "320x416 padded", "rows": [], "peak_gflops_per_s": 50.0}}


def test_results_script_compares_medians_of_two_runs():
    script = _results_script()
    before, now = _run("day 1", 1000.0, 800.0), _run("day 2", 1050.0, 700.0)
    lines = script.reproducibility_lines(before, now)
    row = next(line for line in lines if line.startswith("| 800x1333"))
    assert "1000.0 | 1050.0 | +5.0%" in row and "800.0 | 700.0 | -12.5%" in row
    summary = next(line for line in lines if line.startswith("Largest change"))
    assert "**-12.5%**" in summary and "2 medians compared; 1 within 10%" in summary
    assert "800x1333 section 100 -> 100 GFLOP/s (+0.0%)" in lines[-1]
    assert script.same_machine(before["machine"], now["machine"])
    assert not script.same_machine(before["machine"], _run("x", 1, 1, cpu="Xeon")["machine"])


def test_input_label_names_every_padded_size():
    from instseg_deploy.cli.bench import _input_label

    rows = [{"input_hws": [[320, 416], [320, 512]]}, {"input_hws": [[384, 512]]}]
    assert _input_label(rows) == "320x416 to 384x512 padded"
    assert _input_label([{"input_hws": [[800, 1344]]}]) == "800x1344 padded"
