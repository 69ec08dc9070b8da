"""Hostile checkpoints end in one error line: no segfault, no traceback, no runaway memory (issue 22, items 1
and 12 and the checkpoint part of 10). Real numpy and torch files still load exactly."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from hostile.checkpoints import checkpoint_cases, write_case
from instseg_deploy.checkpoint import read_checkpoint
from instseg_deploy.checkpoint.safe_pickle import MAX_DEPTH, check_pickle_stream, safe_load_pickle
from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import CheckpointError

REPO = Path(__file__).parent.parent
CASES = checkpoint_cases()
RSS_LIMIT_MIB = 1024
CASE_TIMEOUT_S = 60

# One helper process imports torch once, then forks a child per file: a segfault, an abort or a timeout
# (SIGALRM) ends only that child, and its exit status tells. The child's address space is capped 2 GiB above
# what it starts with, so a regression fails here instead of taking the machine's memory.
_RUNNER = r"""
import json, os, resource, signal, sys, traceback
from instseg_deploy.checkpoint import read_checkpoint
from instseg_deploy.errors import InstsegError

def case(path):
    vm_kib = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0])
    resource.setrlimit(resource.RLIMIT_AS, ((vm_kib << 10) + (2 << 30),) * 2)
    signal.alarm(int(os.environ["CASE_TIMEOUT_S"]))
    code = 1
    try:
        read_checkpoint(path)
        print("read without an error")
    except InstsegError as e:
        print(f"error: {e}")  # as the CLI prints it
        code = 2
    except BaseException:
        traceback.print_exc()
    print(f"maxrss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", flush=True)
    return code

logs = sys.argv[1]
for i, path in enumerate(sys.argv[2:]):
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.path.join(logs, f"{i}.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 1
        try:
            code = case(path)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"index": i, "exit": os.waitstatus_to_exitcode(status)}), flush=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "CASE_TIMEOUT_S": str(CASE_TIMEOUT_S)}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[int, str]]:
    """{case name: (exit code, the child's output)} for every hostile file."""
    root = tmp_path_factory.mktemp("hostile_checkpoints")
    logs = root / "logs"
    logs.mkdir()
    paths = [str(write_case(c, root)) for c in CASES]
    run = subprocess.run([sys.executable, "-c", _RUNNER, str(logs), *paths], capture_output=True, text=True,
                         cwd=REPO, env=_env(), timeout=CASE_TIMEOUT_S * len(CASES))
    results = {}
    for line in run.stdout.splitlines():
        record = json.loads(line)
        results[CASES[record["index"]].name] = (record["exit"], (logs / f"{record['index']}.log").read_text())
    assert len(results) == len(CASES), f"the runner stopped early: {run.stderr[-3000:]}"
    return results


def _rss_mib(log: str) -> float:
    return int(log.rsplit("maxrss_kib=", 1)[1].split()[0]) / 1024


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_checkpoint_gives_one_error_line(case, outcomes):
    code, log = outcomes[case.name]
    assert code == 2, f"exit status {code} (negative: killed by that signal; 14 is the timeout):\n{log[-3000:]}"
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if not line.startswith("maxrss_kib=")]
    assert len(lines) == 1 and lines[0].startswith("error: "), log[-3000:]
    assert case.expect in lines[0]
    assert _rss_mib(log) < RSS_LIMIT_MIB, lines[0]


_FRESH_CHILD = r"""
import resource, sys
from instseg_deploy.checkpoint import read_checkpoint
from instseg_deploy.errors import InstsegError
print(f"imported_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
try:
    read_checkpoint(sys.argv[1])
except InstsegError as e:
    print(f"error: {e}")
print(f"maxrss_kib={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
"""


def test_worst_case_memory_stays_under_1gb(outcomes, tmp_path):
    """The case that peaked highest in the forked children, again in a fresh interpreter, as the CLI would
    read it: what the file makes us allocate on top of the imports stays far below 1 GiB. (The imports'
    own peak, torch's mostly, was 520 MiB alone but up to ~1 GiB in some full-suite runs of this machine,
    for reasons outside the file: so the file's share is what is bounded here, and the total in the forked
    children above.)"""
    rss = {name: _rss_mib(log) for name, (_, log) in outcomes.items()}
    assert min(rss.values()) > 100  # the measure is the child's, torch included: not a vacuous number
    worst = max(rss, key=rss.get)
    path = write_case(next(c for c in CASES if c.name == worst), tmp_path)
    run = subprocess.run([sys.executable, "-c", _FRESH_CHILD, str(path)], capture_output=True, text=True,
                         cwd=REPO, env=_env(), timeout=120)
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and len(lines) == 3 and lines[1].startswith("error: "), run.stdout + run.stderr[-2000:]
    imported = int(lines[0].split("=")[1]) / 1024
    grown = _rss_mib(run.stdout) - imported
    assert grown < RSS_LIMIT_MIB / 2, f"{worst}: {grown:.0f} MiB on top of {imported:.0f} MiB of imports"


def test_cases_are_small_files_with_unique_names(tmp_path):
    assert len({c.name for c in CASES}) == len(CASES)
    for case in CASES:
        assert write_case(case, tmp_path).stat().st_size < 1_200_000, case.name


def test_the_corpus_is_hostile_to_plain_unpicklers(tmp_path):
    """The crashes are real: numpy's own callables over chosen bytes, and a deep tuple hashed as a dict key,
    in pickle.loads and in torch.load(weights_only=True) alike (each in a child, which dies by SIGSEGV)."""
    by_name = {c.name: c for c in CASES}
    numpy_child = ("import pickle, sys, numpy as np\n"
                   "obj = pickle.loads(open(sys.argv[1], 'rb').read())\n"
                   "np.array(obj['model']['w'], copy=True)\n")
    torch_child = "import sys, torch\ntorch.load(sys.argv[1], weights_only=True)\n"
    for name, child in [("ndarray_newobj_object_array.pkl", numpy_child), ("deep_tuple_key.pkl", numpy_child),
                        ("dtype_object_flags_cleared.pkl", numpy_child), ("deep_tuple_key.pth", torch_child)]:
        path = write_case(by_name[name], tmp_path)
        run = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, timeout=120)
        assert run.returncode < 0, f"{name}: exit {run.returncode} {run.stderr[-500:]!r}"


def test_cli_prints_one_error_line_for_a_hostile_file(tmp_path):
    by_name = {c.name: c for c in CASES}
    for name in ("ndarray_newobj_object_array.pkl", "zip_bomb.pth"):
        path = write_case(by_name[name], tmp_path)
        run = subprocess.run([sys.executable, "-m", "instseg_deploy.cli.main", "info", "--config",
                              str(DEMO_DATA / "shapes_r50" / "config.yaml"), "--weights", str(path)],
                             capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120)
        assert run.returncode == 2, run.stderr[-2000:]
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and by_name[name].expect in lines[0], run.stderr
        assert "Traceback" not in run.stdout + run.stderr


# --- what must still load ------------------------------------------------------------------------------

_NUMERIC = OrderedDict([
    ("f4", np.arange(12, dtype="f4").reshape(3, 4)), ("fortran", np.asfortranarray(np.arange(6.0).reshape(2, 3))),
    ("big_endian", np.arange(5, dtype=">i4")), ("empty", np.zeros((0, 5), "f4")), ("zero_d", np.array(3, "i8")),
    ("bool", np.array([True, False])), ("complex", np.arange(3) * 1j), ("half", np.ones(2, "f2")),
    ("u1", np.arange(4, dtype="u1")), ("i2", np.arange(4, dtype="i2")), ("scalar", np.float32(2.5)),
    ("big_endian_scalar", np.dtype(">f8").type(3.0)),
])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_pickles_load_as_numpy_loads_them(protocol):
    data = pickle.dumps({"model": _NUMERIC, "extra": [1, 2.0, "s", None, (1, 2), {1: b"x"}, b""],
                         "dtype": np.dtype("f4")}, protocol=protocol)
    ours, theirs = safe_load_pickle(data), pickle.loads(data)
    assert type(ours["model"]) is OrderedDict and list(ours["model"]) == list(theirs["model"])
    for name, want in theirs["model"].items():
        got = ours["model"][name]
        assert type(got) is type(want) and got.dtype == want.dtype.newbyteorder("=") and np.array_equal(got, want)
        if isinstance(want, np.ndarray):
            assert got.shape == want.shape and got.flags.writeable and got.flags.f_contiguous == want.flags.f_contiguous
    assert ours["extra"] == theirs["extra"] and ours["dtype"] == theirs["dtype"]


def test_python2_style_pickle_loads():
    """Python 2's numpy pickles carry the dtype code and the raw data as 8-bit strings (read as latin1)."""
    raw = np.arange(4, dtype="<f4").tobytes()

    def py2str(b: bytes) -> bytes:
        return pickle.SHORT_BINSTRING + bytes([len(b)]) + b

    def g(module: str, name: str) -> bytes:
        return pickle.GLOBAL + f"{module}\n{name}\n".encode()

    dtype = (g("numpy", "dtype") + pickle.MARK + py2str(b"f4") + pickle.BININT1 + b"\x00" + pickle.BININT1 + b"\x01"
             + pickle.TUPLE + pickle.REDUCE + pickle.MARK + pickle.BININT1 + b"\x03" + py2str(b"<") + pickle.NONE * 3
             + (pickle.BININT + struct.pack("<i", -1)) * 2 + pickle.BININT1 + b"\x00" + pickle.TUPLE + pickle.BUILD)
    array = (g("numpy.core.multiarray", "_reconstruct") + pickle.MARK + g("numpy", "ndarray") + pickle.MARK
             + pickle.BININT1 + b"\x00" + pickle.TUPLE + py2str(b"b") + pickle.TUPLE + pickle.REDUCE + pickle.MARK
             + pickle.BININT1 + b"\x01" + pickle.MARK + pickle.BININT1 + b"\x04" + pickle.TUPLE + dtype
             + pickle.NEWFALSE + py2str(raw) + pickle.TUPLE + pickle.BUILD)
    data = (pickle.PROTO + b"\x02" + g("collections", "OrderedDict") + pickle.MARK + pickle.EMPTY_LIST + pickle.MARK
            + pickle.MARK + py2str(b"w") + array + pickle.LIST + pickle.APPENDS + pickle.TUPLE + pickle.REDUCE
            + pickle.STOP)
    loaded = safe_load_pickle(data)
    assert list(loaded) == ["w"] and loaded["w"].dtype == np.float32
    np.testing.assert_array_equal(loaded["w"], np.arange(4, dtype="f4"))


def test_demo_pkl_loads_as_plain_pickle_does():
    path = DEMO_DATA / "shapes_r50" / "model_final.pkl"
    with open(path, "rb") as f:
        ours = safe_load_pickle(f)
    with open(path, "rb") as f:
        theirs = pickle.load(f)  # a trusted fixture, made by detectron2
    assert ours.keys() == theirs.keys() and ours["model"].keys() == theirs["model"].keys()
    for name, want in theirs["model"].items():
        got = ours["model"][name]
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), name


def test_dense_tensors_of_every_numeric_dtype_load(tmp_path):
    tensors = {str(d): torch.ones(2, 3, dtype=d) for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                                           torch.complex64, torch.int64, torch.int32, torch.uint8,
                                                           torch.int8, torch.bool)}
    tensors["param"] = torch.nn.Parameter(torch.arange(4.0))
    tensors["view"] = torch.arange(10.0)[2:6]
    path = tmp_path / "ok.pth"
    torch.save({"model": tensors, "trainer": {"iteration": 3, "state": {0: {"momentum": torch.zeros(2)}}}}, path)
    ckpt = read_checkpoint(path)
    assert ckpt.kind == "detectron2-pth"
    for name, want in tensors.items():
        assert torch.equal(ckpt.state_dict[name], want.detach()), name
    assert ckpt.extra["trainer"]["iteration"] == 3


def test_rezipped_deflated_pth_still_loads(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"model": {"w": torch.randn(64, 64)}}, plain)
    deflated = tmp_path / "deflated.pth"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, src.read(entry.filename))
    assert torch.equal(read_checkpoint(deflated).state_dict["w"], read_checkpoint(plain).state_dict["w"])


def test_numpy_arrays_become_native_contiguous_tensors(tmp_path):
    path = tmp_path / "arrays.pkl"
    path.write_bytes(pickle.dumps({"model": {"be": np.arange(6, dtype=">f4").reshape(2, 3),
                                             "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
                                             "n": np.float64(1.5)}}, protocol=4))
    state = read_checkpoint(path).state_dict
    assert torch.equal(state["be"], torch.arange(6.0).reshape(2, 3)) and state["be"].is_contiguous()
    assert torch.equal(state["f"], torch.arange(6.0, dtype=torch.float64).reshape(2, 3))
    assert state["n"].dtype == torch.float64 and state["n"].item() == 1.5


# --- the bounds themselves ------------------------------------------------------------------------------


def _nested_lists(levels: int) -> bytes:
    return pickle.PROTO + b"\x02" + pickle.MARK * levels + pickle.LIST * levels + pickle.STOP


def test_nesting_limit_is_exact():
    safe_load_pickle(_nested_lists(MAX_DEPTH))
    with pytest.raises(CheckpointError, match="nested deeper"):
        safe_load_pickle(_nested_lists(MAX_DEPTH + 1))


def test_shared_subtrees_are_measured_at_their_deepest_use():
    shallow = [[[]]]
    deep = shallow
    for _ in range(MAX_DEPTH - 3):
        deep = [deep]
    data = pickle.dumps([shallow, deep], protocol=4)  # ``shallow`` is reached at depth 2 first, then deeper
    with pytest.raises(CheckpointError, match="nested deeper"):
        safe_load_pickle(data)
    safe_load_pickle(pickle.dumps([shallow, deep[0]], protocol=4))


def test_stream_check_measures_tuples_exactly():
    def tuples(levels: int) -> bytes:
        return pickle.PROTO + b"\x02" + pickle.EMPTY_TUPLE + pickle.TUPLE1 * (levels - 1) + pickle.STOP

    check_pickle_stream(tuples(MAX_DEPTH))
    with pytest.raises(CheckpointError, match="nested deeper"):
        check_pickle_stream(tuples(MAX_DEPTH + 1))
    with pytest.raises(CheckpointError, match="not a readable pickle"):
        check_pickle_stream(tuples(3)[:-1])  # no STOP
    check_pickle_stream(pickle.dumps({"a": [1, (2, 3)]}, protocol=2))
