"""The API seam's shared decoding of a GET's answer (both clients use it)."""

from __future__ import annotations

import pytest

from kuberesolver.kube.client import json_object


def test_a_json_object_is_returned_as_it_is() -> None:
    assert json_object(b'{"kind": "Service"}', "/api/v1/x") == {"kind": "Service"}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"<html>502</html>", "GET /api/v1/x: not JSON"),
        (b'["a list"]', "GET /api/v1/x: not a JSON object"),
        (b"null", "GET /api/v1/x: not a JSON object"),
    ],
)
def test_anything_else_is_a_broken_answer(body: bytes, said: str) -> None:
    with pytest.raises(OSError, match=said):
        json_object(body, "/api/v1/x")
