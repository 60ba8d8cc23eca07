"""Writing a key, a token or a certificate: atomically, and never readable by others even for a moment."""

import os
from pathlib import Path


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``, created with ``mode`` (a reader sees the old file or the new one)."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
    os.chmod(temporary, mode)  # O_CREAT's mode is masked by the umask, and an existing file keeps its own
    temporary.replace(path)
