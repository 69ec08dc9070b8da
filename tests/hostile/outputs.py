"""Hostile output destinations, for tests that point a command's --out (or a writer) at them.

:func:`file_cases` are destinations of one file (``export --out model.onnx``, ``write_json``);
:func:`folder_cases` are output folders (``predict --out``, ``eval --out``) whose member files are the
ones the command writes. Each case builds its situation under a fresh folder ``root`` and says what
must happen: ``refused`` (one error line holding ``message``, exit code 2, nothing changed) or
``written`` (the output written normally); ``intact(root, out)`` then asserts that what was there
before is unchanged. ``forbidden`` are strings the command's printed output must not hold.

Device nodes are made in ``root`` with mknod (root only), never taken from /dev: a broken writer then
replaces a node in a temporary folder, not the machine's /dev/null.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

TEMP_MARK = "instseg"  # instseg_deploy.atomic's temporaries: .NAME.instseg-<pid>-XXXXXXXX.tmp
MANIFEST_NAME = "instseg-manifest.json"
ALWAYS_FORBIDDEN = ("Traceback", "MarkupError")


@dataclass(frozen=True)
class OutputCase:
    name: str
    kind: str  # "file" or "folder"
    outcome: str  # "refused" or "written"
    make: Callable[[Path], Path]  # builds the situation under root; returns the path to pass as --out
    intact: Callable[[Path, Path], None]  # (root, out): raises AssertionError if what was there changed
    message: str = ""  # part of the error line of a refused case
    forbidden: tuple[str, ...] = ALWAYS_FORBIDDEN


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _victim(root: Path) -> Path:
    victim = root / "victim.txt"
    victim.write_text("precious\n")
    return victim


def _assert_victim(root: Path) -> None:
    assert (root / "victim.txt").read_text() == "precious\n", "the file a symlink points to was written"


def _still(test: Callable[[int], bool], what: str, member: str | None = None) -> Callable[[Path, Path], None]:
    """intact(): ``out`` (or ``out/member``) is still ``what`` (a stat.S_IS* test), not replaced."""
    def intact(root: Path, out: Path) -> None:
        path = out / member if member else out
        assert test(os.lstat(path).st_mode), f"{path} is no longer {what}"
    return intact


def _unchanged_file(name: str, text: str) -> Callable[[Path, Path], None]:
    def intact(root: Path, out: Path) -> None:
        assert (root / name).read_text() == text, f"{root / name} changed"
    return intact


def _link_kept(member: str) -> Callable[[Path, Path], None]:
    def intact(root: Path, out: Path) -> None:
        assert (out / member).is_symlink(), f"{out / member} is no longer a symlink"
        _assert_victim(root)
    return intact


def _mkfifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _mksocket(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the socket file stays after close
    return path


def _can_mknod() -> bool:
    return os.geteuid() == 0


def _mknull(path: Path) -> Path:
    """A character device node like /dev/null (1, 3): what a write to it does is discarded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def _symlink(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def _stale_temp(out: Path, pid: int) -> Path:
    return out.parent / f".{out.name}.{TEMP_MARK}-{pid}-abcd1234.tmp"


def file_cases(filename: str = "out.bin") -> list[OutputCase]:
    """Destinations of one file named like ``filename``."""
    def fifo(root):
        return _mkfifo(root / filename)

    def link_to_file(root):
        return _symlink(root / filename, _victim(root))

    def link_intact(root, out):
        assert out.is_symlink() and os.readlink(out) == str(root / "victim.txt")
        _assert_victim(root)

    def dangling(root):
        return _symlink(root / filename, root / "nowhere" / "x")

    def dangling_intact(root, out):
        assert out.is_symlink() and not (root / "nowhere").exists(), "a dangling symlink was followed"

    def link_to_dir(root):
        (root / "victim_dir").mkdir(parents=True)
        return _symlink(root / filename, root / "victim_dir")

    def link_to_dir_intact(root, out):
        assert out.is_symlink() and list((root / "victim_dir").iterdir()) == []

    def directory(root):
        (root / filename).mkdir(parents=True)
        (root / filename / "keep.txt").write_text("keep")
        return root / filename

    def directory_intact(root, out):
        assert out.is_dir() and not out.is_symlink() and (out / "keep.txt").read_text() == "keep"
        assert [p.name for p in out.iterdir()] == ["keep.txt"]

    def parent_is_file(root):
        root.mkdir(parents=True, exist_ok=True)
        (root / "afile").write_text("a file")
        return root / "afile" / filename

    def markup_fifo(root):
        return _mkfifo(root / "a[/]b [bold]c[/bold]" / filename)

    def escape_fifo(root):
        return _mkfifo(root / "esc\x1b[31mred" / filename)

    def markup_written(root):
        return root / "[/]odd [red]name" / filename

    def existing_file(root):
        root.mkdir(parents=True, exist_ok=True)
        (root / filename).write_bytes(b"old")
        os.chmod(root / filename, 0o640)
        return root / filename

    def existing_intact(root, out):
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o640 and out.read_bytes() != b"old"

    def stale_temp(root):
        root.mkdir(parents=True, exist_ok=True)
        _stale_temp(root / filename, _dead_pid()).write_bytes(b"half")
        return root / filename

    def stale_intact(root, out):
        left = [p.name for p in root.iterdir() if p.name.startswith(f".{filename}.")]
        assert left == [], f"stale temporaries of a dead writer left: {left}"

    def live_temp(root):
        root.mkdir(parents=True, exist_ok=True)
        _stale_temp(root / filename, 1).write_bytes(b"in progress")  # pid 1 is alive in any namespace
        return root / filename

    def live_intact(root, out):
        assert _stale_temp(out, 1).read_bytes() == b"in progress", "a live process's temporary was removed"

    def nothing(root, out):
        assert out.is_file() and not out.is_symlink()

    cases = [
        OutputCase("fifo", "file", "refused", fifo, _still(stat.S_ISFIFO, "a FIFO"), "FIFO"),
        OutputCase("symlink_to_file", "file", "refused", link_to_file, link_intact, "symbolic link"),
        OutputCase("dangling_symlink", "file", "refused", dangling, dangling_intact, "symbolic link"),
        OutputCase("symlink_to_directory", "file", "refused", link_to_dir, link_to_dir_intact, "symbolic link"),
        OutputCase("directory", "file", "refused", directory, directory_intact, "directory"),
        OutputCase("parent_is_file", "file", "refused", parent_is_file, _unchanged_file("afile", "a file"),
                   "not a folder"),
        OutputCase("socket", "file", "refused", lambda r: _mksocket(r / filename), _still(stat.S_ISSOCK, "a socket"),
                   "socket"),
        OutputCase("fifo_in_markup_folder", "file", "refused", markup_fifo, _still(stat.S_ISFIFO, "a FIFO"),
                   "a[/]b [bold]c[/bold]"),
        OutputCase("fifo_in_folder_with_escape", "file", "refused", escape_fifo, _still(stat.S_ISFIFO, "a FIFO"),
                   "FIFO", (*ALWAYS_FORBIDDEN, "\x1b")),
        OutputCase("markup_folder_name", "file", "written", markup_written, nothing),
        OutputCase("existing_regular_file", "file", "written", existing_file, existing_intact),
        OutputCase("stale_temp_of_dead_writer", "file", "written", stale_temp, stale_intact),
        OutputCase("temp_of_live_writer", "file", "written", live_temp, live_intact),
    ]
    if _can_mknod():
        cases.append(OutputCase("character_device", "file", "refused", lambda r: _mknull(r / filename),
                                _still(stat.S_ISCHR, "a character device"), "character device"))
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        def read_only(root):
            (root / "ro").mkdir(parents=True)
            os.chmod(root / "ro", 0o555)
            return root / "ro" / filename

        def nothing_written(root, out):
            assert not out.exists(), "written into a read-only folder"

        cases.append(OutputCase("read_only_folder", "file", "refused", read_only, nothing_written,
                                "Permission denied"))
    return cases


def folder_cases(members: Sequence[str] = ("results.json",)) -> list[OutputCase]:
    """Output folders; ``members``: the names the command writes into its folder."""
    first = members[0]

    def folder_is_file(root):
        root.mkdir(parents=True, exist_ok=True)
        (root / "out").write_text("a file")
        return root / "out"

    def member_fifo(root):
        _mkfifo(root / "out" / first)
        return root / "out"

    def member_symlink(root):
        victim = _victim(root)
        _symlink(root / "out" / first, victim)
        return root / "out"

    def member_dir(root):
        (root / "out" / first).mkdir(parents=True)
        return root / "out"

    def manifest_symlink(root):
        victim = _victim(root)
        _symlink(root / "out" / MANIFEST_NAME, victim)
        return root / "out"

    def linked_folder(root):
        (root / "real").mkdir(parents=True)
        return _symlink(root / "out", root / "real")

    def linked_intact(root, out):
        assert out.is_symlink() and all((root / "real" / m).is_file() for m in members)

    def foreign_files(root):
        (root / "out").mkdir(parents=True)
        (root / "out" / "notes.txt").write_text("mine")
        return root / "out"

    def foreign_intact(root, out):
        assert (out / "notes.txt").read_text() == "mine" and all((out / m).is_file() for m in members)
        assert (out / MANIFEST_NAME).is_file()

    return [
        OutputCase("folder_is_file", "folder", "refused", folder_is_file, _unchanged_file("out", "a file"),
                   "not a folder"),
        OutputCase("folder_is_fifo", "folder", "refused", lambda r: _mkfifo(r / "out"),
                   _still(stat.S_ISFIFO, "a FIFO"), "not a folder"),
        OutputCase("member_is_fifo", "folder", "refused", member_fifo, _still(stat.S_ISFIFO, "a FIFO", first), "FIFO"),
        OutputCase("member_is_symlink", "folder", "refused", member_symlink, _link_kept(first), "symbolic link"),
        OutputCase("member_is_directory", "folder", "refused", member_dir, _still(stat.S_ISDIR, "a directory", first),
                   "directory"),
        OutputCase("manifest_is_symlink", "folder", "refused", manifest_symlink, _link_kept(MANIFEST_NAME),
                   "symbolic link"),
        OutputCase("folder_is_symlink_to_folder", "folder", "written", linked_folder, linked_intact),
        OutputCase("folder_with_the_users_files", "folder", "written", foreign_files, foreign_intact),
    ]


def output_cases(filename: str = "out.bin", members: Sequence[str] = ("results.json",)) -> list[OutputCase]:
    return file_cases(filename) + folder_cases(members)
