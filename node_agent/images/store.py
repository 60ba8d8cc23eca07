"""The image files this storage agent holds: ``<image_dir>/<image>.img``."""

from pathlib import Path

from rackmesh.protocol import image_file_name, is_image_name


class ImageStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, image: str) -> Path | None:
        """The file of ``image`` if this node holds it. A name that is not an image name never reaches the
        filesystem: it could name another file, or be longer than a file name may be (ENAMETOOLONG)."""
        if not is_image_name(image):
            return None
        path = self.directory / image_file_name(image)
        return path if path.is_file() else None

    def held(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(path.name.removesuffix(".img") for path in self.directory.glob("*.img")
                      if is_image_name(path.name.removesuffix(".img")))
