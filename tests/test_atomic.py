"""Atomic writes: all or nothing, the file mode of an ordinary write, destinations that are not regular
files refused, temporaries of killed writers cleaned up; output sets with a manifest written last."""

import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from hostile.outputs import file_cases, folder_cases
from instseg_deploy.atomic import (
    MANIFEST_NAME,
    IncompleteOutput,
    OutputError,
    atomic_path,
    check_destination,
    output_set,
    read_output_set,
    remove_stale_temporaries,
    remove_stale_temporaries_in,
    write_bytes,
    write_json,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_new_file_gets_umask_mode_not_mkstemp_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "metrics.json", {"AP": 1.0})
    finally:
        os.umask(old)
    assert _mode(tmp_path / "metrics.json") == 0o644


def test_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o640


def test_failure_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"complete")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("exporter failed")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


# --- destinations that are not regular files ----------------------------------------------------------

def test_fifo_destination_is_refused_and_kept(tmp_path):
    fifo = tmp_path / "out.bin"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match="FIFO"):
        write_bytes(fifo, b"data")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]  # no temporary either


def test_symlink_destination_is_refused_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    with pytest.raises(OutputError, match="symbolic link"):
        write_json(link, {"a": 1})
    assert link.is_symlink() and victim.read_text() == "precious"
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "nowhere" / "x.json")
    with pytest.raises(OutputError, match="symbolic link"):
        write_json(dangling, {})
    assert not (tmp_path / "nowhere").exists()


def test_directory_where_a_file_is_expected_is_refused(tmp_path):
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    (folder / "keep").write_text("x")
    with pytest.raises(OutputError, match="is a directory"):
        write_bytes(folder, b"onnx")
    assert (folder / "keep").read_text() == "x"


def test_character_device_is_refused(tmp_path):
    # /dev/null is only ever checked, never handed to a writer: a broken writer would replace the node.
    with pytest.raises(OutputError, match="character device"):
        check_destination("/dev/null")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    if os.geteuid() != 0:
        pytest.skip("writing to a character device of our own needs mknod (root)")
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with pytest.raises(OutputError, match="character device"):
        write_bytes(node, b"x")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_parent_that_is_a_file_is_one_error(tmp_path):
    (tmp_path / "afile").write_text("a")
    with pytest.raises(OutputError, match="not a folder"):
        write_bytes(tmp_path / "afile" / "out.bin", b"x")


def test_destination_replaced_by_a_fifo_during_the_write_is_kept(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(OutputError, match="FIFO"), atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
        os.mkfifo(target)  # someone else, while the result was being produced
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_hostile_file_destinations(tmp_path):
    """The cases of tests/hostile/outputs.py against the writer itself (the CLI corpus reuses them)."""
    for case in file_cases("model.onnx"):
        root = tmp_path / case.name
        root.mkdir()
        out = case.make(root)
        if case.outcome == "refused":
            with pytest.raises(OutputError) as err:
                write_bytes(out, b"new")
            assert case.message in str(err.value), (case.name, str(err.value))
        else:
            write_bytes(out, b"new")
            assert out.read_bytes() == b"new", case.name
        case.intact(root, out)


# --- temporaries of killed writers ---------------------------------------------------------------------

def test_temporary_name_carries_our_mark_and_pid(tmp_path):
    with atomic_path(tmp_path / "out.bin") as tmp:
        prefix = f".out.bin.instseg-{os.getpid()}-"
        assert tmp.name.startswith(prefix) and tmp.name.endswith(".tmp") and "-" not in tmp.name[len(prefix):]
        tmp.write_bytes(b"x")


def test_stale_temporaries_of_dead_writers_go_others_stay(tmp_path):
    target = tmp_path / "out.bin"
    dead = tmp_path / f".out.bin.instseg-{_dead_pid()}-abcd1234.tmp"
    live = tmp_path / ".out.bin.instseg-1-abcd1234.tmp"  # pid 1 is alive
    ours = tmp_path / f".out.bin.instseg-{os.getpid()}-abcd1234.tmp"  # this process may be writing it
    other_name = tmp_path / f".other.bin.instseg-{_dead_pid()}-abcd1234.tmp"
    not_ours = tmp_path / ".out.bin.abcd1234.tmp"  # no pid in the name: cannot tell whose
    for p in (dead, live, ours, other_name, not_ours):
        p.write_bytes(b"half")
    dead_link = tmp_path / f".out.bin.instseg-{_dead_pid()}-link0000.tmp"
    dead_link.symlink_to(tmp_path / "victim")
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert not dead.exists()
    assert all(p.exists() for p in (live, ours, other_name, not_ours)) and dead_link.is_symlink()
    assert remove_stale_temporaries(target) == []
    assert remove_stale_temporaries_in(tmp_path) == [other_name]
    assert all(p.exists() for p in (live, ours, not_ours)) and dead_link.is_symlink()


def test_temporary_can_keep_the_suffix_for_writers_that_choose_the_format_by_name(tmp_path):
    target = tmp_path / "clip.mp4"
    with atomic_path(target, keep_suffix=True) as tmp:
        prefix = f".clip.mp4.instseg-{os.getpid()}-"
        assert tmp.name.startswith(prefix) and tmp.name.endswith(".tmp.mp4"), tmp.name
        tmp.write_bytes(b"video")
    assert target.read_bytes() == b"video" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    with output_set(tmp_path / "set") as files, files.path("v.mp4", keep_suffix=True) as tmp:
        assert tmp.name.endswith(".tmp.mp4"), tmp.name
        tmp.write_bytes(b"v")
    assert set(read_output_set(tmp_path / "set")) == {"v.mp4"}


def test_stale_suffixed_temporaries_of_dead_writers_go_live_ones_stay(tmp_path):
    target = tmp_path / "clip.mp4"
    dead = tmp_path / f".clip.mp4.instseg-{_dead_pid()}-abcd1234.tmp.mp4"
    live = tmp_path / ".clip.mp4.instseg-1-abcd1234.tmp.mp4"  # pid 1 is alive
    other_suffix = tmp_path / f".clip.mp4.instseg-{_dead_pid()}-abcd1234.tmp.avi"  # not clip.mp4's form
    other_name = tmp_path / f".other.mp4.instseg-{_dead_pid()}-abcd1234.tmp.mp4"
    for p in (dead, live, other_suffix, other_name):
        p.write_bytes(b"half")
    write_bytes(target, b"new")
    assert not dead.exists() and live.exists() and other_suffix.exists() and other_name.exists()
    assert remove_stale_temporaries_in(tmp_path) == [other_name]  # the any-name cleanup output sets use
    assert live.exists() and other_suffix.exists()


def test_sigkilled_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    target = tmp_path / "model.onnx"
    script = ("import os, signal, sys\n"
              "from instseg_deploy.atomic import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n"
              "    tmp.write_bytes(b'half')\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(target)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".model.onnx.instseg-"), left
    write_bytes(target, b"complete")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


# --- output sets ------------------------------------------------------------------------------------------

def test_output_set_writes_a_manifest_last(tmp_path):
    out = tmp_path / "eval"
    with output_set(out) as files:
        files.write_json("detections.json", [1, 2])
        files.write_bytes("overlays/a.png", b"png")
        assert not (out / MANIFEST_NAME).exists()  # incomplete until the block ends
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == ["detections.json", "overlays/a.png"]
    assert manifest["files"]["overlays/a.png"]["bytes"] == 3
    assert read_output_set(out) == {"detections.json": out / "detections.json",
                                    "overlays/a.png": out / "overlays" / "a.png"}
    assert {p.name for p in out.iterdir()} == {"detections.json", MANIFEST_NAME, "overlays"}


def test_interrupted_output_set_is_not_complete_and_the_rerun_cleans_up(tmp_path):
    out = tmp_path / "predict"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    with output_set(out) as files:
        files.write_json("results.json", ["old"])
        files.write_bytes("a.png", b"old a")
    with pytest.raises(KeyboardInterrupt), output_set(out) as files:
        files.write_bytes("b.png", b"new b")  # new overlays beside the old results.json: a mixed set
        raise KeyboardInterrupt
    with pytest.raises(IncompleteOutput, match="interrupted"):
        read_output_set(out)
    with output_set(out) as files:
        files.write_bytes("c.png", b"c")
        files.write_json("results.json", ["new"])
    # a.png (the first set's) and b.png (the interrupted run's) were ours and are not in this set
    assert {p.name for p in out.iterdir()} == {MANIFEST_NAME, "c.png", "notes.txt", "results.json"}
    assert set(read_output_set(out)) == {"c.png", "results.json"}
    assert (out / "notes.txt").read_text() == "the user's"


def test_output_set_file_changed_afterwards_is_detected(tmp_path):
    out = tmp_path / "eval"
    with output_set(out) as files:
        files.write_json("metrics.json", {"AP": 1.0})
        files.write_json("detections.json", [])
    (out / "metrics.json").write_text('{"AP": 2.0}')
    with pytest.raises(IncompleteOutput, match="metrics.json changed"):
        read_output_set(out)
    assert set(read_output_set(out, verify=False)) == {"metrics.json", "detections.json"}
    (out / "detections.json").unlink()
    with pytest.raises(IncompleteOutput, match="detections.json is missing"):
        read_output_set(out)


def test_second_concurrent_output_set_is_refused(tmp_path):
    out = tmp_path / "eval"
    with output_set(out) as files:
        files.write_json("metrics.json", {})
        with pytest.raises(OutputError, match="another instseg run"), output_set(out):
            pass
    assert set(read_output_set(out)) == {"metrics.json"}


def test_sigkilled_output_set_is_incomplete_and_its_files_are_pruned_later(tmp_path):
    out = tmp_path / "predict"
    script = ("import os, signal, sys\n"
              "from instseg_deploy.atomic import output_set\n"
              "with output_set(sys.argv[1]) as files:\n"
              "    files.write_bytes('x.png', b'x')\n"
              "    with files.path('y.png') as tmp:\n"
              "        tmp.write_bytes(b'half')\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(out)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(IncompleteOutput):
        read_output_set(out)
    assert len([p for p in out.iterdir() if p.name.startswith(".y.png.instseg-")]) == 1
    with output_set(out) as files:  # the dead run's lock went with it
        files.write_json("results.json", [])
    assert {p.name for p in out.iterdir()} == {MANIFEST_NAME, "results.json"}


def test_output_set_names_stay_inside_the_folder(tmp_path):
    with output_set(tmp_path / "out") as files:
        for bad in ("../escape.json", "/abs.json", MANIFEST_NAME, "a/../../b"):
            with pytest.raises(OutputError):
                files.write_json(bad, {})
    assert not (tmp_path / "escape.json").exists()


def test_tampered_manifest_and_symlinked_subfolders_never_reach_outside(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.png").write_text("not ours")
    (tmp_path / "victim.txt").write_text("precious")
    with output_set(out) as files:
        files.write_json("results.json", [])
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    manifest["files"].update({"../victim.txt": {}, str(tmp_path / "victim.txt"): {}, "sub/x.png": {}})
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    (out / "sub").symlink_to(elsewhere)
    with output_set(out) as files:
        with pytest.raises(OutputError, match="symbolic link"):
            files.write_bytes("sub/y.png", b"y")
        files.write_json("results.json", [1])
    assert (tmp_path / "victim.txt").read_text() == "precious" and (elsewhere / "x.png").read_text() == "not ours"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["x.png"]
    assert set(read_output_set(out)) == {"results.json"}


def test_hostile_output_folders(tmp_path):
    members = ("metrics.json", "detections.json")
    for case in folder_cases(members):
        root = tmp_path / case.name
        root.mkdir()
        out = case.make(root)
        if case.outcome == "refused":
            with pytest.raises(OutputError) as err, output_set(out) as files:
                for name in members:
                    files.write_json(name, {})
            assert case.message in str(err.value), (case.name, str(err.value))
            with pytest.raises(IncompleteOutput):
                read_output_set(out)
        else:
            with output_set(out) as files:
                for name in members:
                    files.write_json(name, {})
            assert set(read_output_set(out)) == set(members), case.name
        case.intact(root, out)
