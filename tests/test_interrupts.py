"""Interruptions: SIGINT, SIGTERM and SIGKILL in the middle of `instseg train` and its checkpoint writes,
then --resume; DataLoader workers and other children that die with their parent; error lines that print
paths as plain text.

The training runs are tiny (64-96 px images, 2 iterations, one thread): they check the machinery.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from typer.testing import CliRunner

from instseg_deploy.checkpoint import read_checkpoint
from tiny_training import tiny_schedule

runner = CliRunner()

# MAX_ITER a multiple of CHECKPOINT_PERIOD: the last periodic checkpoint is the final iteration's.
OVERRIDES = tiny_schedule(max_iter=2, steps=[], warmup_iters=1, checkpoint_period=2)

# Runs `instseg ARGS` with torch.save replaced, for model_final.pth only, by a write cut short by SIGNAL.
KILL_AT_FINAL_WRITE = """
import os, sys, time
from pathlib import Path
import torch
sig, args = int(sys.argv[1]), sys.argv[2:]
real_save = torch.save
def save(obj, f, *a, **k):
    if Path(f).name.startswith(".model_final.pth."):
        Path(f).write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), sig)
        time.sleep(60)  # the signal's handler runs here
    return real_save(obj, f, *a, **k)
torch.save = save
sys.argv = ["instseg", *args]
from instseg_deploy.cli.main import main
main()
"""


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    """4 training images of 64-96 px: (images dir, annotations)."""
    from instseg_deploy.data.synth import generate

    out = tmp_path_factory.mktemp("interrupt_data") / "shapes"
    paths = generate(out, 4, seed=3, splits={"train": 4}, image_size=(64, 96), max_instances=3)
    return paths["train"].parent / "images", paths["train"]


@pytest.fixture(scope="module")
def config(tmp_path_factory, tiny_config_path) -> Path:
    path = tmp_path_factory.mktemp("interrupt_cfg") / "tiny.yaml"
    path.write_text(f'_BASE_: "{tiny_config_path}"\n' + OVERRIDES, encoding="utf-8")
    return path


def _train_args(config: Path, shapes, out: Path, *extra: str) -> list[str]:
    images, annotations = shapes
    return ["train", "--config", str(config), "--images", str(images), "--annotations", str(annotations),
            "--out", str(out), "--seed", "0", "--threads", "1", "--device", "cpu", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # --threads 1 of the in-process resume


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_resume_after_a_kill_during_the_final_write_writes_model_final(tmp_path, config, shapes, monkeypatch,
                                                                      one_thread, sig, code):
    from instseg_deploy.cli import common
    from instseg_deploy.cli.main import app

    out = tmp_path / "run"
    cmd = [sys.executable, "-c", KILL_AT_FINAL_WRITE, str(int(sig)), *_train_args(config, shapes, out)]
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
    output = killed.stdout + killed.stderr
    assert killed.returncode == code, output[-3000:]
    assert "wrote" not in output and "Traceback" not in output
    if sig != signal.SIGKILL:
        assert "interrupted" in output
    final = out / "model_final.pth"
    assert not final.exists() and (out / "last_checkpoint").read_text() == "model_0000001.pth"
    # SIGINT and SIGTERM unwind and remove the temporary; SIGKILL leaves it for the next run to remove.
    assert len(_temporaries(out)) == (1 if sig == signal.SIGKILL else 0), _temporaries(out)

    said = []  # (line, whether model_final.pth existed when it was printed)
    real_print = common.console.print

    def spy(*objects, **kwargs):
        text = " ".join(str(o) for o in objects)
        if "wrote" in text:
            said.append((text, final.is_file()))
        return real_print(*objects, **kwargs)

    monkeypatch.setattr(common.console, "print", spy)
    resumed = runner.invoke(app, _train_args(config, shapes, out, "--resume"))
    assert resumed.exit_code == 0, resumed.output
    assert "model_0000001.pth holds the final iteration 1" in resumed.output
    assert [line for line, _ in said if str(final) in line] and all(existed for _, existed in said), said
    assert (out / "last_checkpoint").read_text() == "model_final.pth" and _temporaries(out) == []
    final_ckpt, periodic = read_checkpoint(final), read_checkpoint(out / "model_0000001.pth")
    assert final_ckpt.extra["trainer"]["iteration"] == 1
    assert all(torch.equal(final_ckpt.state_dict[k], v) for k, v in periodic.state_dict.items())

    said.clear()
    again = runner.invoke(app, _train_args(config, shapes, out, "--resume"))
    assert again.exit_code == 0, again.output
    assert "nothing to train" in again.output and f"{final} was already in place" in again.output
    assert not [line for line, _ in said if f"wrote {final}" in line]


def test_resume_says_what_exists_when_the_checkpoints_are_past_max_iter(tmp_path, config, shapes, one_thread):
    from instseg_deploy.config import load_config
    from instseg_deploy.data.coco import load_coco_dataset
    from instseg_deploy.errors import InstsegError
    from instseg_deploy.training.trainer import TrainOptions, train

    torch.set_num_threads(1)
    out = tmp_path / "run"
    cfg, dataset = load_config(config), load_coco_dataset(*shapes)

    def run(max_iter: int, after_iteration=None):
        options = TrainOptions(out_dir=out, max_iter=max_iter, checkpoint_period=1, resume=True, seed=0, device="cpu")
        return train(cfg, dataset, None, options, after_iteration=after_iteration)

    def stop(iteration: int) -> None:
        if iteration == 1:  # after model_0000001.pth, before model_final.pth
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(2, stop)
    with pytest.raises(InstsegError, match="model_0000001.pth is at iteration 1, past SOLVER.MAX_ITER 1: there is "
                                           "no checkpoint of iteration 0 to make model_final.pth from"):
        run(1)
    assert not (out / "model_final.pth").exists()
    result = run(2)  # the checkpoint of the final iteration becomes model_final.pth
    assert result.wrote_final and (out / "last_checkpoint").read_text() == "model_final.pth"
    result = run(1)  # a finished run asked for fewer iterations: nothing written, nothing claimed
    assert not result.wrote_final and read_checkpoint(out / "model_final.pth").extra["trainer"]["iteration"] == 1


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the command ended (exit code {proc.returncode}) before {what}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_train_leaves_no_dataloader_worker(tmp_path, config, shapes, sig):
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    cmd = [sys.executable, "-m", "instseg_deploy.cli.main",
           *_train_args(config, shapes, out, "--num-workers", "1", "--max-iter", "100000", "--log-period", "1")]
    # Output to a file, not a pipe: an orphaned worker holding the pipe would block the reader.
    with open(log, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    workers: list[psutil.Process] = []
    try:
        # metrics.json has a line once an iteration is done: the worker has started and delivered a batch.
        metrics = out / "metrics.json"
        _wait_for(lambda: metrics.is_file() and metrics.stat().st_size > 0, 300, "the first iteration", proc)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "no DataLoader worker process"
        if sig == signal.SIGKILL:
            # Stopped, the worker cannot notice on its own that its parent is gone (torch's watchdog):
            # only the kernel's parent-death signal ends it.
            for w in workers:
                w.send_signal(signal.SIGSTOP)
        proc.send_signal(sig)
        proc.wait(timeout=120)
        assert proc.returncode == (-9 if sig == signal.SIGKILL else 143), log.read_text()[-3000:]
        _wait_for(lambda: all(_gone(w.pid) for w in workers), 5, f"the DataLoader workers {[w.pid for w in workers]} "
                  "to end with train")
        if sig == signal.SIGTERM:
            text = log.read_text()
            assert "interrupted" in text and "Traceback" not in text, text[-3000:]
            assert _temporaries(out) == [], (_temporaries(out), text[-3000:])
    finally:
        for w in workers:
            if not _gone(w.pid):
                w.kill()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _raised_in(filename: str, error: BaseException):
    """(type, error, traceback) of ``error`` raised by code compiled as ``filename``."""
    try:
        exec(compile("raise error", filename, "exec"), {"error": error})
    except BaseException as e:  # noqa: BLE001 - the test's own error
        return type(e), e, e.__traceback__


@pytest.mark.parametrize("filename, error, printed", [
    ("/usr/lib/python3/multiprocessing/resource_sharer.py", ConnectionResetError(104, "reset"), False),
    ("/usr/lib/python3/multiprocessing/resource_sharer.py", EOFError(), False),
    ("/usr/lib/python3/multiprocessing/resource_sharer.py", ValueError("bad"), True),
    ("/work/instseg_deploy/training/data.py", ConnectionResetError(104, "reset"), True),
])
def test_a_worker_is_quiet_only_about_its_parent_hanging_up(filename, error, printed):
    """What the DataLoader worker's sys.excepthook filter lets through (multiprocessing.resource_sharer's
    thread calls sys.excepthook itself when the interrupted parent drops a batch hand-over)."""
    from instseg_deploy.training.data import _quiet_hangup

    seen = []
    _quiet_hangup(lambda *exc_info: seen.append(exc_info), *_raised_in(filename, error))
    assert bool(seen) == printed


CHILD = ("import os, sys, time\n"
         "from instseg_deploy.lifetime import die_with_parent\n"
         "die_with_parent(int(sys.argv[1]))\n"
         "open(sys.argv[2], 'w').write(str(os.getpid()))\n"
         "time.sleep(600)\n")
PARENT = ("import os, subprocess, sys, time\n"
          "subprocess.Popen([sys.executable, '-c', sys.argv[1], str(os.getpid()), sys.argv[2]])\n"
          "time.sleep(600)\n")


def test_child_dies_with_its_sigkilled_parent(tmp_path):
    """What DataLoader workers and bench rows call first: the kernel ends them with their parent."""
    ready = tmp_path / "child_pid"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(ready)], start_new_session=True)
    child = None
    try:
        child = int(_wait_for(lambda: ready.is_file() and ready.read_text(), 120, "the child", parent))
        parent.kill()
        parent.wait()
        _wait_for(lambda: _gone(child), 5, "the child to end with its parent")
    finally:
        if child is not None and not _gone(child):
            os.kill(child, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_child_whose_parent_already_died_exits_at_once():
    code = ("import os\n"
            "from instseg_deploy.lifetime import die_with_parent\n"
            "die_with_parent(os.getppid() + 1)\n"  # not our parent: as if it had died before this ran
            "print('still running')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "still running" not in proc.stdout


# --- error lines ------------------------------------------------------------------------------------------

def test_error_line_prints_brackets_and_control_characters_as_plain_text(tmp_path, config, shapes):
    from instseg_deploy.cli.main import app

    folder = tmp_path / "x[/]y [bold]z\x1b[31m"  # "x[" / "]y [bold]z..."
    folder.mkdir(parents=True)
    (folder / "run").write_text("a file where the run folder goes")
    result = runner.invoke(app, _train_args(config, shapes, folder / "run"))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == (f"error: --out {tmp_path}/x[/]y [bold]z\\x1b[31m/run exists and is not a folder "
                         "(a run folder holds checkpoints, config.yaml and metrics.json)")
    assert "Traceback" not in result.output and "\x1b" not in result.output


def test_sigterm_is_an_interruption_with_exit_code_143(tmp_path):
    code = ("import os, signal, time\n"
            "import typer\n"
            "from instseg_deploy.cli.common import user_errors\n"
            "@user_errors\n"
            "def command():\n"
            "    try:\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "        time.sleep(60)\n"
            "    finally:\n"
            "        print('cleanup ran', flush=True)\n"
            "typer.run(command)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert "cleanup ran" in proc.stdout and proc.stderr.strip() == "interrupted"


def test_sigterm_is_caught_only_while_a_command_runs():
    from instseg_deploy.cli.common import user_errors

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("this test process already handles SIGTERM")
    during = []

    @user_errors
    def command():
        during.append(signal.getsignal(signal.SIGTERM))

    command()
    assert during[0] not in (signal.SIG_DFL, signal.SIG_IGN, None)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
