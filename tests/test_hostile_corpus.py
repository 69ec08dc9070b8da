"""The hostile-input corpus through the CLI (issue 22): every case of tests/hostile/ (checkpoints, configs,
output destinations, images, results files, exported models, command lines) run as `instseg ...` must
end with exit code 2 and exactly one `error:` line naming the problem: no crash, no hang, no traceback,
under 1 GiB of memory, nothing created at its output path and nothing it was pointed at destroyed.

One server process imports the CLI (and torch) once and forks a child per case, whose address space
is capped and whose run is bounded by an alarm: a segfault, a hang or a runaway allocation fails that
case alone. The children's peak RSS comes from wait4.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hostile.checkpoints import checkpoint_cases, write_case
from hostile.configs import hostile_config_cases
from hostile.inputs import WEIGHTS, image_cases, model_cases, results_cases
from hostile.outputs import folder_cases

REPO = Path(__file__).resolve().parent.parent
CASE_TIMEOUT_S = 60
RSS_LIMIT_MIB = 1024

_SERVER = r"""
import json, os, resource, signal, sys
import torch  # imported once, before forking; no torch work is done here
from instseg_deploy.cli.main import app

for line in sys.stdin:
    case = json.loads(line)
    log = os.open(case["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    pid = os.fork()
    if pid == 0:
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.chdir(case["cwd"])
        vm_kib = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0])
        resource.setrlimit(resource.RLIMIT_AS, ((vm_kib << 10) + (4 << 30),) * 2)
        signal.alarm(int(os.environ["CASE_TIMEOUT_S"]))
        code = 0
        try:
            app(args=case["argv"], prog_name="instseg", standalone_mode=True)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(log)
    _, status, usage = os.wait4(pid, 0)
    print(json.dumps({"exit": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}), flush=True)
"""


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    expect: str
    cwd: Path
    out: Path | None = None  # must not exist afterwards
    intact: object = None  # callable() -> None, raises when what the case pointed at changed


def _cases(root: Path) -> list[Case]:
    cases: list[Case] = []

    def folder(name: str) -> Path:
        path = root / name
        path.mkdir(parents=True)
        return path

    for c in checkpoint_cases():
        f = folder(f"ckpt_{c.name}")
        cases.append(Case(f"checkpoint/{c.name}", ["info", "-w", str(write_case(c, f))], c.expect, f))
    for c in hostile_config_cases():
        if c.outcome != "error":
            continue
        f = folder(f"config_{c.name}")
        cases.append(Case(f"config/{c.name}", ["info", "-c", str(c.write(f)), "-w", WEIGHTS], c.expect, f))
    gt = REPO / "instseg_deploy" / "demo_data" / "shapes_val" / "annotations.json"
    for c in folder_cases(("metrics.json",)):  # what `eval --predictions --out` writes
        if c.outcome != "refused":
            continue
        f = folder(f"out_{c.name}")
        results = f / "results.json"
        results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]))
        (f / "root").mkdir()
        out = c.make(f / "root")
        cases.append(Case(f"output/{c.name}", ["eval", "--predictions", str(results), "--annotations", str(gt),
                                               "--out", str(out)], c.message, f,
                          intact=lambda c=c, f=f, out=out: c.intact(f / "root", out)))
    for c in image_cases() + results_cases() + model_cases():
        f = folder(f"cli_{c.name}")
        cases.append(Case(f"cli/{c.name}", c.argv(f), c.expect, f, out=f / c.out if c.out else None))
    return cases


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """[(case, exit code, printed output, peak RSS MiB)] for every case."""
    root = tmp_path_factory.mktemp("hostile_corpus")
    cases = _cases(root)
    logs = root / "logs"
    logs.mkdir()
    requests = "".join(json.dumps({"argv": c.argv, "cwd": str(c.cwd), "log": str(logs / f"{i}.log")}) + "\n"
                       for i, c in enumerate(cases))
    env = {**os.environ, "CASE_TIMEOUT_S": str(CASE_TIMEOUT_S), "COLUMNS": "200", "NO_COLOR": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run([sys.executable, "-c", _SERVER], input=requests, capture_output=True, text=True, cwd=REPO,
                         env=env, timeout=CASE_TIMEOUT_S * len(cases))
    records = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(records) == len(cases), f"the corpus server stopped early: {run.stderr[-3000:]}"
    yield [(c, r["exit"], (logs / f"{i}.log").read_text(errors="replace"), r["maxrss_kib"] / 1024)
           for i, (c, r) in enumerate(zip(cases, records))]
    shutil.rmtree(root, ignore_errors=True)


def test_every_hostile_input_ends_in_one_error_line(corpus):
    classes = {c.name.split("/")[0] for c, *_ in corpus}
    assert classes == {"checkpoint", "config", "output", "cli"} and len(corpus) >= 100
    failures = []
    for case, code, output, rss in corpus:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        problems = []
        if code != 2:
            problems.append(f"exit {code} (negative: killed by that signal; -14: the {CASE_TIMEOUT_S} s alarm)")
        if "Traceback" in output:
            problems.append("a traceback")
        if len(errors) != 1:
            problems.append(f"{len(errors)} error lines")
        elif case.expect.lower() not in errors[0].lower():
            problems.append(f"error line without {case.expect!r}")
        if rss >= RSS_LIMIT_MIB:
            problems.append(f"peak RSS {rss:.0f} MiB")
        if case.out is not None and case.out.exists():
            problems.append(f"{case.out.name} was created")
        if case.intact is not None:
            try:
                case.intact()
            except AssertionError as e:
                problems.append(f"destination changed: {e}")
        if problems:
            failures.append(f"{case.name}: {'; '.join(problems)}\n    {output.strip()[-600:]}")
    worst = max(corpus, key=lambda r: r[3])
    print(f"\n{len(corpus)} cases; largest peak RSS {worst[3]:.0f} MiB ({worst[0].name})")
    assert not failures, f"{len(failures)} of {len(corpus)} cases:\n" + "\n".join(failures)
