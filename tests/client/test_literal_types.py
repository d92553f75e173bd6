"""``source=`` and ``lb_policy=`` are ``Literal`` types: mypy refuses a misspelt value."""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path

import mypy.api

from kuberesolver.client.settings import ChannelArgs

SOURCES = {"file", "api", "operator"}
POLICIES = {"round_robin", "weighted_round_robin", "pick_first"}


def _literals(annotation: object) -> set[object]:
    """The values of ``Literal[...] | None``."""
    values: set[object] = set()
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Literal:
            values.update(typing.get_args(arg))
        else:
            assert arg is type(None), annotation
    return values


def test_the_public_keywords_are_literals() -> None:
    hints = typing.get_type_hints(ChannelArgs)
    assert _literals(hints["source"]) == SOURCES
    assert _literals(hints["lb_policy"]) == POLICIES


def test_mypy_strict_refuses_a_misspelt_source_and_policy(tmp_path: Path) -> None:
    program = tmp_path / "uses_kuberesolver.py"
    program.write_text(
        textwrap.dedent(
            """
            import kuberesolver
            import kuberesolver.aio

            good = kuberesolver.insecure_channel(
                "kubernetes:///a.b:c", source="api", lb_policy="pick_first"
            )
            bad = kuberesolver.insecure_channel("kubernetes:///a.b:c", source="apii")
            worse = kuberesolver.aio.insecure_channel(
                "kubernetes:///a.b:c", lb_policy="roundrobin"
            )
            """
        )
    )
    out, err, status = mypy.api.run(
        ["--strict", "--no-error-summary", "--python-version", "3.11", str(program)]
    )
    assert status == 1, out + err
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 2, out
    assert ":8:" in errors[0], errors
    assert '"source"' in errors[0], errors
    assert ":10:" in errors[1], errors
    assert '"lb_policy"' in errors[1], errors
