"""An image's cache key covers everything its build reads; the wheelhouse follows pyproject."""

from __future__ import annotations

import platform
import tomllib
from pathlib import Path

import pytest

from testenv.images import base, build, wheelhouse

ROOT = Path(__file__).resolve().parents[2]


def copy_sources(dockerfile: Path) -> set[str]:
    """The first path component of every context file a COPY reads (not --from a stage)."""
    joined = dockerfile.read_text().replace("\\\n", " ")
    found = set()
    for line in joined.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            found |= {w.strip("/").split("/")[0] for w in words[1:-1] if not w.startswith("--")}
    return found


def test_the_product_build_reads_only_what_its_key_covers() -> None:
    assert copy_sources(ROOT / "Dockerfile") == set(build.PRODUCT_CONTEXT)
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    admitted = {ln[1:].strip("/") for ln in lines if ln.startswith("!")}
    assert admitted == set(build.PRODUCT_CONTEXT)
    assert "*" in lines


def test_the_test_images_read_only_their_assembled_context() -> None:
    scripts = {s for spec in build.IMAGES.values() for s in spec.scripts}
    expected = {*scripts, "constraints.txt", "requirements.txt", "wheelhouse"}
    assert copy_sources(build.HERE / "Dockerfile") == expected


def test_a_changed_input_changes_the_key(tmp_path: Path) -> None:
    spec = build.IMAGES["backend"]
    (tmp_path / "wheelhouse").mkdir()
    wheel = tmp_path / "wheelhouse" / "a-1-py3-none-any.whl"
    wheel.write_bytes(b"one")
    files = [wheel]
    the_base = base.Base("k" * 64, tmp_path / "rootfs.tar")
    key = build.image_key(spec, tmp_path, files, the_base)
    assert build.image_key(spec, tmp_path, files, the_base) == key
    wheel.write_bytes(b"two")
    assert build.image_key(spec, tmp_path, files, the_base) != key
    wheel.write_bytes(b"one")
    other_base = base.Base("j" * 64, tmp_path / "rootfs.tar")
    assert build.image_key(spec, tmp_path, files, other_base) != key
    assert build.image_key(build.IMAGES["client"], tmp_path, files, the_base) != key


def test_the_wheelhouse_follows_the_extras_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    expected = project["dependencies"] + [
        r for r in optional["projector"] if r not in project["dependencies"]
    ]
    assert wheelhouse.requirements(["projector"]) == expected
    # An extra that names another (kuberesolver[client]) brings that one's requirements:
    # pip would look the project itself up in the index.
    own = [r for r in optional["direct"] if r.startswith("kuberesolver[")]
    assert own == ["kuberesolver[client]"]
    direct = wheelhouse.requirements(["direct"])
    assert set(direct) == (set(optional["direct"]) - set(own)) | set(optional["client"])
    assert len(direct) == len(set(direct))
    everything = wheelhouse.requirements(wheelhouse.all_extras())
    assert not [r for r in everything if r.startswith("kuberesolver")]
    assert set(wheelhouse.all_extras()) == set(optional)
    with pytest.raises(ValueError, match="no extra nope"):
        wheelhouse.requirements(["projector", "nope"])


def test_the_wheels_are_those_the_base_s_c_library_runs() -> None:
    arch = platform.machine()
    tags = wheelhouse.platform_tags((2, 36))
    assert tags[0] == f"manylinux_2_36_{arch}"
    assert {f"manylinux_2_17_{arch}", f"manylinux2014_{arch}", f"manylinux1_{arch}"} <= set(tags)
    assert f"manylinux_2_37_{arch}" not in tags
    assert not any(t.startswith("manylinux_2_4_") for t in tags)
