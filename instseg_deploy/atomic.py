"""Write outputs so that a failure never destroys, or leaves half-written, what was there.

One file (:func:`atomic_path`, :func:`write_bytes`, ...): written to a temporary file beside it, then
renamed over it. The destination must be absent or a regular file: a symlink, a directory, a FIFO or a
device at that path is refused (replacing it would destroy it, or write where the link points). The
temporary name carries our prefix and the writer's pid, ``.NAME.instseg-<pid>-XXXXXXXX.tmp``, or with
``keep_suffix`` also NAME's suffix, ``.NAME.instseg-<pid>-XXXXXXXX.tmp.mp4`` (for writers that choose the
format by the file name, like cv2.VideoWriter); one left by a writer that was killed (its pid no longer
alive) is removed the next time NAME is written.

A set of files that belong together (:func:`output_set`, :func:`read_output_set`): a manifest written
last lists the run's files with their sizes and SHA-256, so a folder whose manifest is missing, or whose
files differ from it, holds no complete set. A manifest, not a temporary folder swapped in at the end:
the output folder is the user's (it may hold their own files, be a mount point, have its own owner and
mode, be open in a shell), and a swap would delete or replace all of that; renaming a non-empty folder
over another is not atomic either (Linux needs renameat2's RENAME_EXCHANGE). The manifest keeps every
file in place and only ever touches files that one of our runs wrote there.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from instseg_deploy.errors import InstsegError

TEMP_MARK = "instseg"
MANIFEST_NAME = "instseg-manifest.json"
# Names this run (or an interrupted one) put in the folder, one per line, appended before each file is
# renamed into place; it also holds the folder's lock while a set is being written.
JOURNAL_NAME = ".instseg-manifest.partial"
MANIFEST_FORMAT = "instseg-output-set/1"


class OutputError(InstsegError):
    """An output path cannot be written safely (not a regular file, unwritable, in use by another run)."""


class IncompleteOutput(InstsegError):
    """A folder does not hold a complete output set: its run did not finish, or its files changed since."""


_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_destination(path: str | os.PathLike) -> os.stat_result | None:
    """The ``lstat`` of ``path`` when it is a regular file, None when it does not exist; anything else
    (a symlink, which is not followed, a directory, a FIFO, a device, a socket) raises :class:`OutputError`."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise OutputError(f"cannot write {path}: a parent of it is a file, not a folder") from None
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"refusing to write {path}: it exists and is {_kind(st.st_mode)}, not a regular file "
                          "(remove it or choose another output path)")
    return st


def _make_parent(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # folder, or one of its parents, is a file (or a dangling link)
        raise OutputError(f"cannot write into {folder}: it, or a parent of it, exists and is not a folder") from None
    except NotADirectoryError:
        raise OutputError(f"cannot write into {folder}: a parent of it is a file, not a folder") from None
    except OSError as e:
        raise OutputError(f"cannot create the folder {folder}: {e.strerror}") from None


def _new_file_mode(existing: os.stat_result | None) -> int:
    """The mode a plain ``open(path, "w")`` would give: kept from the file it replaces, else 0o666 & ~umask."""
    if existing is not None:
        return existing.st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _temp_prefix(name: str) -> str:
    return f".{name}.{TEMP_MARK}-"


def _temp_suffix(name: str, keep_suffix: bool) -> str:
    return ".tmp" + (PurePosixPath(name).suffix if keep_suffix else "")


def _writer_pid(entry_name: str, name: str) -> int | None:
    """The writer's pid in a temporary of ``name``, ``.NAME.instseg-<pid>-XXXXXXXX.tmp`` or its ``keep_suffix``
    form ``...tmp<NAME's suffix>``; None if it is not one of ours."""
    prefix = _temp_prefix(name)
    if not entry_name.startswith(prefix):
        return None
    for end in (_temp_suffix(name, False), _temp_suffix(name, True)):
        if entry_name.endswith(end):
            pid, _, rest = entry_name[len(prefix):-len(end)].partition("-")
            if pid.isdigit() and rest:
                return int(pid)
    return None


def _remove_stale(folder: Path, name: str | None) -> list[Path]:
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if name is not None:
            pid = _writer_pid(entry.name, name)
        else:  # any NAME: .NAME.instseg-<pid>-XXXXXXXX.tmp[.suffix]
            mark = entry.name.rfind(f".{TEMP_MARK}-")
            pid = _writer_pid(entry.name, entry.name[1:mark]) if mark > 0 and entry.name.startswith(".") else None
        if pid is None or pid == os.getpid() or _pid_alive(pid):
            continue
        if entry.is_file(follow_symlinks=False):  # ours are regular files; leave anything else alone
            with contextlib.suppress(FileNotFoundError):  # a concurrent cleaner got there first
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` that writers killed mid-write left (their pid is not alive);
    another live process's temporary is never touched. Returns the removed paths."""
    path = Path(path)
    return _remove_stale(path.parent, path.name)


def remove_stale_temporaries_in(folder: str | os.PathLike) -> list[Path]:
    """:func:`remove_stale_temporaries` for every name in ``folder``."""
    return _remove_stale(Path(folder), None)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds.

    ``path`` must be absent or a regular file (see :func:`check_destination`); the result gets the mode
    of the file it replaces, else the umask's. ``keep_suffix``: the temporary's name ends in ``path``'s
    suffix too (``.tmp.mp4``), for writers that pick the format from the name.
    """
    path = Path(path)
    check_destination(path)
    _make_parent(path.parent)
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path.name)}{os.getpid()}-",
                                   suffix=_temp_suffix(path.name, keep_suffix), dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # Again just before the rename: the path may have changed while the block ran.
        existing = check_destination(path)
        # mkstemp creates 0600 files; results are meant to be shared like any other output
        os.chmod(tmp_path, _new_file_mode(existing))
        try:
            os.replace(tmp_path, path)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# --- output sets -------------------------------------------------------------------------------------

def _file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _member_name(name: str) -> str:
    """A set member's name: a relative path inside the folder, '/'-separated, no '..'."""
    parts = PurePosixPath(str(name).replace(os.sep, "/")).parts
    if not parts or parts[0] == "/" or any(p in ("..", ".") for p in parts) or "\n" in str(name):
        raise OutputError(f"output name {name!r} is not a plain relative path inside the output folder")
    member = "/".join(parts)
    if member in (MANIFEST_NAME, JOURNAL_NAME):
        raise OutputError(f"output name {member!r} is reserved for the folder's manifest")
    return member


def _member_path(folder: Path, member: str) -> Path:
    """``folder/member``, refused when a folder on the way is a symlink: a member never lands (and a stale
    one is never removed) outside the output folder."""
    inner = folder
    for part in member.split("/")[:-1]:
        inner = inner / part
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(inner).st_mode):
                raise OutputError(f"refusing to write {folder / member}: {inner} is "
                                  f"{_kind(os.lstat(inner).st_mode)}, not a folder of the output set")
    return folder / member


def _ours(names, folder: Path) -> set[str]:
    """The names in a manifest or journal that are members of ``folder`` (a tampered list names nothing else)."""
    kept = set()
    for name in names:
        with contextlib.suppress(OutputError):
            _member_path(folder, _member_name(name))
            kept.add(_member_name(name))
    return kept


def _read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, None when it has none (or an unreadable one: then it is no complete set)."""
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT \
            or not isinstance(manifest.get("files"), dict):
        return None
    return manifest


class OutputSet:
    """The files of one run in ``folder``; see :func:`output_set`."""

    def __init__(self, folder: Path, journal):
        self.folder = folder
        self._journal = journal
        self.files: dict[str, dict[str, int | str]] = {}

    @contextlib.contextmanager
    def path(self, name: str, keep_suffix: bool = False) -> Iterator[Path]:
        """Like :func:`atomic_path` (``keep_suffix`` too) for ``folder/name``, recorded in the set once it is
        in place."""
        member = _member_name(name)
        target = _member_path(self.folder, member)
        check_destination(target)  # before the journal names it: a refused path never becomes "ours"
        # Recorded before the rename: a run killed right after it still knows the file is ours.
        self._journal.write(member + "\n")
        self._journal.flush()
        with atomic_path(target, keep_suffix) as tmp:
            yield tmp
            size, sha256 = _file_digest(tmp)
        self.files[member] = {"bytes": size, "sha256": sha256}

    def write_bytes(self, name: str, data: bytes) -> Path:
        with self.path(name) as tmp:
            tmp.write_bytes(data)
        return _member_path(self.folder, _member_name(name))

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    def write_json(self, name: str, obj) -> Path:
        return self.write_text(name, json.dumps(obj))


def _open_journal(folder: Path):
    """The folder's journal, opened for appending and locked; another run holding it is refused."""
    import fcntl  # POSIX; only output sets need it

    path = folder / JOURNAL_NAME
    while True:
        check_destination(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC,
                         0o644)
        except OSError as e:
            raise OutputError(f"cannot write into {folder}: {e.strerror}") from None
        journal = os.fdopen(fd, "r+", encoding="utf-8")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            journal.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise OutputError(f"another instseg run is writing into {folder} right now; wait for it or "
                                  "choose another output folder") from None
            raise OutputError(f"cannot lock {path}: {e.strerror}") from None
        try:
            if os.path.samestat(os.fstat(fd), os.lstat(path)):
                return journal
        except FileNotFoundError:
            pass
        journal.close()  # the run that held it finished and removed it meanwhile: lock the current one


@contextlib.contextmanager
def output_set(folder: str | os.PathLike) -> Iterator[OutputSet]:
    """Write a set of files into ``folder`` as a unit: complete, or marked incomplete.

    The folder's manifest (``instseg-manifest.json``) goes first (a reader then sees no complete set), the
    files are written one by one (each atomically, with :meth:`OutputSet.path` / ``write_*``), and only when
    the block succeeds are the files an earlier run of ours left there and this one did not write removed
    and the new manifest written, last. Files that no run of ours wrote are never touched. A second run
    into the same folder at the same time is refused. Readers use :func:`read_output_set`.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():  # a symlink to a folder is the user's choice of disk: followed
        raise OutputError(f"refusing to write into {folder}: it exists and is not a folder")
    created = not folder.exists()
    _make_parent(folder)
    check_destination(folder / MANIFEST_NAME)
    journal = _open_journal(folder)
    try:
        remove_stale_temporaries_in(folder)  # of the files of a killed run that this one may not write again
        journal.seek(0)
        earlier = set(journal.read().splitlines())  # files of an interrupted run
        manifest = _read_manifest(folder)
        earlier = _ours(earlier | set(manifest["files"] if manifest else ()), folder)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / MANIFEST_NAME)  # from here on the folder holds no complete set
        journal.seek(0)
        journal.truncate()
        journal.write("".join(f"{name}\n" for name in sorted(earlier)))  # still ours if this run dies too
        journal.flush()
        outputs = OutputSet(folder, journal)
        try:
            yield outputs
        except BaseException:
            if not outputs.files and not earlier:  # a run that failed before writing anything leaves nothing
                with contextlib.suppress(OSError):
                    os.unlink(folder / JOURNAL_NAME)
                    if created:
                        folder.rmdir()
            raise
        for name in sorted(earlier - set(outputs.files)):
            with contextlib.suppress(OSError, OutputError):  # OutputError: a folder on the way is now a symlink
                stale = _member_path(folder, name)
                if stat.S_ISREG(os.lstat(stale).st_mode):
                    os.unlink(stale)
        write_json(folder / MANIFEST_NAME, {"format": MANIFEST_FORMAT, "complete": True, "pid": os.getpid(),
                                            "files": dict(sorted(outputs.files.items()))})
        os.unlink(folder / JOURNAL_NAME)  # while still locked: no other run is writing here
    finally:
        journal.close()


def read_output_set(folder: str | os.PathLike, verify: bool = True) -> dict[str, Path]:
    """{name: path} of the complete output set in ``folder``; raises :class:`IncompleteOutput` when its
    manifest is missing (the run was interrupted, or is still running) or, with ``verify``, a file is
    missing or differs from the manifest (size and SHA-256)."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is None:
        raise IncompleteOutput(f"{folder} holds no complete output set: {MANIFEST_NAME} is missing (the run that "
                               "wrote it was interrupted or is still running); run the command again")
    files = {}
    for name, entry in manifest["files"].items():
        path = _member_path(folder, _member_name(name))
        if verify:
            try:
                found = _file_digest(path) if stat.S_ISREG(os.lstat(path).st_mode) else None
            except OSError:
                found = None
            if found is None:
                raise IncompleteOutput(f"{folder} is not a complete output set: {name} is missing")
            if found != (entry.get("bytes"), entry.get("sha256")):
                raise IncompleteOutput(f"{folder} is not a complete output set: {name} changed after its run wrote "
                                       "it (another run into the same folder?)")
        files[name] = path
    return files
