"""The ``kuberesolver`` command: --version, development snapshots, and a quiet end in a pipe."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import kuberesolver
from kuberesolver.__main__ import main
from kuberesolver.client import dev_snapshot
from kuberesolver.client.dev_snapshot import build_snapshot, parse_address, write_snapshot
from kuberesolver.core.atomic_writer import DATA_DIR_NAME
from kuberesolver.core.snapshot import Endpoint, decode, load


def test_version_is_the_distribution_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert kuberesolver.__version__ == version("kuberesolver")
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"kuberesolver {version('kuberesolver')}\n"


def test_snapshot_writes_kubelets_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["snapshot", str(tmp_path), "greeter.demo", "127.0.0.1:50051", "[::1]:50052"]) == 0
    target = tmp_path / "greeter.demo"
    assert (target / DATA_DIR_NAME).is_symlink()
    assert (target / "endpoints.json").is_symlink()
    snap = load(target / "endpoints.json")
    assert snap.server_name == "greeter.demo"
    assert snap.revision == 1
    assert snap.endpoints == (Endpoint("127.0.0.1", 50051), Endpoint("::1", 50052))
    assert "revision 1, 2 endpoints" in capsys.readouterr().out


def test_snapshot_revision_moves_exactly_when_endpoints_change(tmp_path: Path) -> None:
    def write(*addresses: str) -> int:
        return write_snapshot(tmp_path, build_snapshot("greeter.demo", addresses)).stat().st_ino

    write("127.0.0.1:1")
    first = load(tmp_path / "greeter.demo/endpoints.json")
    write("127.0.0.1:1")
    assert load(tmp_path / "greeter.demo/endpoints.json").revision == first.revision
    write("127.0.0.1:1", "127.0.0.1:2")
    assert load(tmp_path / "greeter.demo/endpoints.json").revision == first.revision + 1


def test_the_documented_minimal_snapshot_is_accepted() -> None:
    doc = dev_snapshot.__doc__
    assert doc is not None
    minimal = doc.split("accepts::", 1)[1].split("Everything else", 1)[0]
    snap = decode(minimal)
    assert snap.endpoints == (Endpoint("127.0.0.1", 50051),)
    assert snap.target.matches_port("grpc")
    assert snap.target.matches_port(8080)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["greeter", "1.2.3.4:5"], "expected SERVICE.NAMESPACE"),
        (["greeter.demo", "1.2.3.4"], "expected ADDRESS:PORT"),
        (["greeter.demo", "1.2.3.4:0"], "1..65535"),
        (["greeter.demo", "::1:5"], "IPv6 address in brackets"),
        (["--policy=least_request", "greeter.demo", "1.2.3.4:5"], "must be one of"),
    ],
)
def test_snapshot_refuses_bad_input_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["snapshot", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_parse_address() -> None:
    assert parse_address("[fd00::1]:443") == ("fd00::1", 443)
    assert parse_address("localhost:50051") == ("localhost", 50051)


def test_inspect_json_into_head_ends_quietly(tmp_path: Path) -> None:
    addresses = [f"10.0.{i // 250}.{i % 250 + 1}:50051" for i in range(3000)]
    write_snapshot(tmp_path, build_snapshot("greeter.demo", addresses))
    done = subprocess.run(
        f"'{sys.executable}' -m kuberesolver inspect --json '{tmp_path}' | head -n 3",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.splitlines()[0] == "{"
    assert done.stderr == "", done.stderr


def test_inspect_json_is_complete_without_a_pipe(tmp_path: Path) -> None:
    write_snapshot(tmp_path, build_snapshot("greeter.demo", ["127.0.0.1:50051"]))
    done = subprocess.run(
        [sys.executable, "-m", "kuberesolver", "inspect", "--json", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["endpoints"][0]["address"] == "127.0.0.1:50051"
