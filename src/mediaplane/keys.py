"""Secrets generated once in the data dir when the operator configured none (dev mode).

Generated files are created with mode 0600 and reused on every start, so URLs signed before a
restart still verify after it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def load_or_create_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """Return the file's bytes, creating it with `make()` first if it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(make())
    try:
        # link() fails if another process won the race: then everyone uses the winner's key.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def load_or_create_secret(data_dir: Path, name: str) -> bytes:
    """A 32-byte random secret kept at DATA_DIR/keys/NAME."""
    return load_or_create_file(data_dir / "keys" / name, lambda: secrets.token_bytes(32))
