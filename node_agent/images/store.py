"""The image files this storage agent holds: ``<image_dir>/<image>.img``, and their sha256."""

import hashlib
from pathlib import Path

from rackmesh.protocol import image_file_name, is_image_name

CHUNK = 1024 * 1024


class ImageStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Hashing reads the whole file, so it is done once per version of it (size and mtime).
        self._digests: dict[str, tuple[tuple[int, int], str]] = {}

    def path(self, image: str) -> Path | None:
        """The file of ``image`` if this node holds it. A name that is not an image name never reaches the
        filesystem: it could name another file, or be longer than a file name may be (ENAMETOOLONG)."""
        if not is_image_name(image):
            return None
        path = self.directory / image_file_name(image)
        return path if path.is_file() else None

    def sha256(self, image: str) -> str | None:
        """The sha256 (hex) of the file of ``image``, published with each copy; None if not held."""
        path = self.path(image)
        if path is None:
            return None
        stat = path.stat()
        version = (stat.st_size, stat.st_mtime_ns)
        known = self._digests.get(image)
        if known is not None and known[0] == version:
            return known[1]
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
        self._digests[image] = (version, digest.hexdigest())
        return digest.hexdigest()

    def held(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(path.name.removesuffix(".img") for path in self.directory.glob("*.img")
                      if is_image_name(path.name.removesuffix(".img")))
