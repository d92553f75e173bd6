"""Fixtures for the first hour of a new user: real kubectl and helm on a fresh control plane.

These tests run in the suite's private network, beside the session's control
plane (tests/cluster.py); most start a fresh one of their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from testenv import ControlPlane
from testenv.kube import admin_session
from testenv.tools import UserShell
from tests import cluster

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def pytest_configure(config: pytest.Config) -> None:
    cluster.configure(config)


def readme_block(name: str) -> list[str]:
    """The command lines of the README block marked ``<!-- readme-test: NAME -->``."""
    match = re.search(
        rf"<!-- readme-test: {re.escape(name)} -->\n```sh\n(.*?)```", README.read_text(), re.DOTALL
    )
    assert match, f"README.md has no block marked readme-test: {name}"
    return [ln for ln in match.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


@pytest.fixture(scope="module")
def fresh_control_plane() -> Iterator[ControlPlane]:
    """A control plane of this module's own: nothing installed, as a new cluster."""
    with ControlPlane() as cp:
        yield cp


@pytest.fixture(scope="module")
def fresh_admin(fresh_control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    yield from admin_session(fresh_control_plane.admin_kubeconfig)


@pytest.fixture(scope="module")
def user(fresh_control_plane: ControlPlane) -> UserShell:
    """A cluster admin at a terminal in the repository, with kubectl and helm."""
    return UserShell(fresh_control_plane.admin_kubeconfig)


@pytest.fixture(scope="session")
def offline(tmp_path_factory: pytest.TempPathFactory) -> UserShell:
    """kubectl and helm at a terminal with no cluster: for rendering only."""
    kubeconfig = tmp_path_factory.mktemp("offline") / "kubeconfig"
    kubeconfig.write_text("")
    return UserShell(kubeconfig)
