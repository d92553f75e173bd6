"""A one-binary OCI image archive, written without a registry or an image builder.

The test node's images hold a single static Go program (testenv/gomod/node-images):
one uncompressed layer with the binary, a config naming it the entrypoint, a
manifest and an index, packed as an OCI image-layout tar that
``ctr images import`` reads. The archive is deterministic (fixed mtimes and
owners), so the same binary always gives the same digest, and the image's
tag is derived from it.

    >>> layer = layer_tar({"bin/x": (b"#!", 0o755)})
    >>> layer == layer_tar({"bin/x": (b"#!", 0o755)})
    True
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Image", "layer_tar", "write_archive"]

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Image:
    """An archive on disk and the reference it is imported under."""

    name: str
    archive: Path


def layer_tar(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    """An uncompressed layer: ``path -> (content, mode)``, parents as directories, owner root."""
    dirs = sorted({str(Path(p).parents[i]) for p in files for i in range(len(Path(p).parts) - 1)})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_archive(binary: Path, repository: str, directory: Path) -> Image:
    """Pack ``binary`` as ``/<its name>``, the entrypoint, into ``directory``; reuse it if there.

    The tag is the first 12 hex digits of the binary's sha256, so a rebuilt
    program is a new image and an unchanged one is never re-imported as new.
    """
    content = binary.read_bytes()
    tag = hashlib.sha256(content).hexdigest()[:12]
    name = f"{repository}:{tag}"
    archive = directory / f"{binary.name}-{tag}.oci.tar"
    if archive.is_file():
        return Image(name, archive)
    blobs: dict[str, bytes] = {}
    layer = layer_tar({binary.name: (content, 0o755)})
    layer_desc = _blob(blobs, layer, LAYER)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [f"/{binary.name}"], "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": _blob(blobs, _json(config), CONFIG),
        "layers": [layer_desc],
    }
    manifest_desc = _blob(blobs, _json(manifest), MANIFEST)
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    manifest_desc["annotations"] = {
        "io.containerd.image.name": name,
        "org.opencontainers.image.ref.name": tag,
    }
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}  # fmt: skip
    files = {
        "oci-layout": (_json({"imageLayoutVersion": "1.0.0"}), 0o644),
        "index.json": (_json(index), 0o644),
        **{f"blobs/sha256/{d.removeprefix('sha256:')}": (b, 0o644) for d, b in blobs.items()},
    }
    directory.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(
        f".{os.getpid()}.partial"
    )  # concurrent sessions each write theirs
    partial.write_bytes(layer_tar(files))
    partial.replace(archive)
    return Image(name, archive)
