"""Image files for the sandbox's storage nodes: each storage node gets its own directory, holding
the images its topology entry lists (small files with deterministic content, not bootable disks)."""

import hashlib
from pathlib import Path

from rackmesh.protocol import image_file_name
from rackmesh_sandbox.topology import Topology

IMAGE_SIZE = 1 << 20


def image_content(image: str) -> bytes:
    """1 MiB that differ per image, so a test can tell which file it was served."""
    block = hashlib.sha256(image.encode()).digest()
    return (f"rackmesh sandbox image {image}\n".encode() + block * (IMAGE_SIZE // len(block)))[:IMAGE_SIZE]


def write_images(topology: Topology, base: Path) -> dict[str, Path]:
    """Create ``base/<node>/<image>.img`` for every node's images (a node without a role may hold some
    before it is labelled a storage node); returns each node's directory."""
    directories = {}
    for node in topology.nodes:
        directory = base / node.name
        directories[node.name] = directory
        if node.images:
            directory.mkdir(parents=True, exist_ok=True)
            for image in node.images:
                (directory / image_file_name(image)).write_bytes(image_content(image))
    return directories
