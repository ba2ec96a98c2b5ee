"""The embedded data directory (`var_dir`) is for the user medcloud runs as, and nobody else.

It holds the SQLite database and its WAL (patient data), generated keys and stored objects. What
medcloud creates there gets mode 0700 (directories) or 0600 (files) whatever the umask, and
anything found more open when a process starts (a copy, a restore, an older version, a hand-made
directory) is tightened then, with a warning. SQLite gives a database's -wal and -shm files the
main file's permissions, so creating that file 0600 before SQLite opens it covers them too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

import structlog
from pydantic import SecretStr

log = structlog.get_logger(__name__)

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600
OTHERS = 0o077
"""Permission bits of the group and of other users."""
KEYS = "keys"
"""Subdirectory of `var_dir` that generated keys are kept in."""
REPORTED_PATHS = 5
"""Paths a tightening warning names; it counts the rest."""


def make_private_directory(path: Path) -> None:
    """Create `path`, and any missing parents, with mode 0700; leave existing ones as they are."""
    missing: list[Path] = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIRECTORY)
        except FileExistsError:
            continue  # made meanwhile by another process of this deployment: theirs to set
        # mkdir's mode is filtered by the umask; the result should not depend on it.
        os.chmod(directory, PRIVATE_DIRECTORY)


def open_private_file(path: Path, flags: int) -> int:
    """Open `path` with `os.O_CREAT` among `flags`, as a 0600 file; return the descriptor."""
    descriptor = os.open(path, flags | os.O_CREAT, PRIVATE_FILE)
    try:
        os.fchmod(descriptor, PRIVATE_FILE)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def link_secret(configured: SecretStr | None, var_dir: Path, name: str) -> bytes:
    """The key that signs a kind of link: `configured`, or the key file `name` under the key
    directory, made on first start.

    Every process of a deployment must share it (a link made by one process is opened by
    another), so a split deployment configures it.
    """
    if configured is not None:
        return configured.get_secret_value().encode()
    path = var_dir / KEYS / name
    if not path.exists():
        make_private_directory(path.parent)
        try:
            descriptor = open_private_file(path, os.O_WRONLY | os.O_EXCL)
        except FileExistsError:
            pass  # another process of this deployment made it first: use theirs
        else:
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(32))
    return path.read_bytes()


def prepare_data_directory(var_dir: Path, *, sqlite_file: Path | None = None) -> None:
    """Create `var_dir` (and its key directory) private, tighten what is too open inside it, and
    create the SQLite database file 0600 before SQLite does."""
    make_private_directory(var_dir)
    make_private_directory(var_dir / KEYS)
    tightened, refused = _tighten_tree(var_dir)
    if sqlite_file is not None:
        make_private_directory(sqlite_file.parent)
        with contextlib.suppress(FileExistsError):
            os.close(open_private_file(sqlite_file, os.O_WRONLY | os.O_EXCL))
        # A database kept outside var_dir was not walked above.
        for companion in (sqlite_file, *_sqlite_companions(sqlite_file)):
            if not companion.is_relative_to(var_dir) and companion.exists():
                _tighten(companion, tightened, refused)
    if tightened:
        log.warning(
            "data_dir.tightened",
            count=len(tightened),
            paths=[_shown(path, var_dir) for path in tightened[:REPORTED_PATHS]],
        )
    if refused:
        log.warning(
            "data_dir.too_open",
            count=len(refused),
            paths=[_shown(path, var_dir) for path in refused[:REPORTED_PATHS]],
            hint="readable by other users and not ours to change; fix its owner or mode",
        )


def _sqlite_companions(database: Path) -> tuple[Path, ...]:
    return tuple(database.with_name(database.name + suffix) for suffix in ("-wal", "-shm"))


def _tighten_tree(root: Path) -> tuple[list[Path], list[Path]]:
    tightened: list[Path] = []
    refused: list[Path] = []
    _tighten(root, tightened, refused)
    # os.walk follows no symbolic links, and _tighten changes none: a link out of var_dir must
    # not make medcloud change the mode of what it points at.
    for directory, subdirectories, files in os.walk(root):
        for name in (*subdirectories, *files):
            _tighten(Path(directory, name), tightened, refused)
    return tightened, refused


def _tighten(path: Path, tightened: list[Path], refused: list[Path]) -> None:
    try:
        status = path.lstat()
    except FileNotFoundError:
        return  # removed meanwhile (a partial object renamed, a WAL checkpointed away)
    if stat.S_ISLNK(status.st_mode) or not stat.S_IMODE(status.st_mode) & OTHERS:
        return
    try:
        os.chmod(path, stat.S_IMODE(status.st_mode) & ~OTHERS)
    except PermissionError:
        refused.append(path)
        return
    tightened.append(path)


def _shown(path: Path, var_dir: Path) -> str:
    return path.relative_to(var_dir).as_posix() if path.is_relative_to(var_dir) else str(path)
