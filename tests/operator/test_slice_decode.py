"""The fast EndpointSlice decoder gives what json.loads and slice_view give, or steps aside."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kuberesolver.core.endpointslices import slice_view
from kuberesolver.operator.logic.slice_decode import decode_slice_event, decode_slice_list
from kuberesolver.operator.runtime.informer import _key, _service_of

maybe = st.none() | st.just(...)  # `...`: the key is left out
odd = st.none() | st.booleans() | st.integers(-3, 70000) | st.text(max_size=6) | st.floats(0, 9)


def field(values: st.SearchStrategy[Any], weird: bool) -> st.SearchStrategy[Any]:
    """A field's value: mostly of its type, else null or absent; with ``weird``, anything."""
    return st.one_of(values, values, values, st.none(), st.just(...), *([odd] if weird else []))


def obj(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    out = {k: draw(v) for k, v in fields.items()}
    return {k: v for k, v in out.items() if v is not ...}


@st.composite
def slices(draw: st.DrawFn, weird: bool = False) -> dict[str, Any]:
    text = st.text(max_size=8)
    conditions = st.builds(
        dict,
        **{c: field(st.booleans(), weird) for c in ("ready", "serving", "terminating")},
    ).map(lambda d: {k: v for k, v in d.items() if v is not ...})
    target = st.builds(
        dict, kind=field(st.sampled_from(["Pod", "Node"]), weird), name=field(text, weird)
    ).map(lambda d: {k: v for k, v in d.items() if v is not ...})
    endpoint = st.builds(
        dict,
        addresses=field(
            st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2", "fd00::1"]), min_size=1), weird
        ),
        conditions=field(conditions, weird),
        zone=field(text, weird),
        nodeName=field(text, weird),
        targetRef=field(target, weird),
        hints=st.just({"forZones": [{"name": "z"}]}),
    ).map(lambda d: {k: v for k, v in d.items() if v is not ...})
    port = st.builds(
        dict,
        name=field(text, weird),
        port=field(st.integers(0, 65535), weird),
        protocol=field(st.sampled_from(["TCP", "UDP"]), weird),
    ).map(lambda d: {k: v for k, v in d.items() if v is not ...})
    labels = st.dictionaries(
        st.sampled_from(
            ["kubernetes.io/service-name", "endpointslice.kubernetes.io/managed-by", "x"]
        ),
        text,
    )
    metadata = obj(
        draw,
        {
            "name": field(text, weird),
            "namespace": field(text, weird),
            "resourceVersion": field(st.sampled_from(["1", "42", "x"]), weird),
            "labels": field(labels, weird),
            "managedFields": st.just([{"manager": "m", "fieldsV1": {"f:endpoints": {}}}]),
            "uid": st.just("8e0c7b9f"),
        },
    )
    return obj(
        draw,
        {
            "metadata": st.just(metadata) | st.none(),
            "addressType": field(st.sampled_from(["IPv4", "IPv6"]), weird),
            "ports": field(st.lists(port, max_size=2), weird),
            "endpoints": field(st.lists(endpoint, min_size=1, max_size=4), weird),
            "kind": st.just("EndpointSlice"),
        },
    )


def plain(body: dict[str, Any]) -> Any:
    """What the reflector's plain path makes of one slice (or the error it raises)."""
    try:
        return _key(body), _service_of(body), slice_view(body)
    except Exception as exc:
        return type(exc)


def test_every_combination_of_conditions_decodes_as_the_plain_path() -> None:
    states = (True, False, None, ...)  # `...`: absent
    endpoints = [
        {"addresses": ["10.0.0.1"], "conditions": {
            k: v for k, v in zip(("ready", "serving", "terminating"), combo, strict=True)
            if v is not ...
        }}
        for combo in itertools.product(states, repeat=3)
    ] + [{"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.3"], "conditions": None}]  # fmt: skip
    body = {"metadata": {"name": "s", "namespace": "ns"}, "endpoints": endpoints}
    got = decode_slice_event(json.dumps({"type": "ADDED", "object": body}).encode())
    assert got is not None
    assert got[2:] == plain(body)


@settings(max_examples=300)
@given(body=slices(), kind=st.sampled_from(["ADDED", "MODIFIED", "DELETED"]))
def test_a_well_typed_event_decodes_exactly_as_the_plain_path(
    body: dict[str, Any], kind: str
) -> None:
    line = json.dumps({"type": kind, "object": body}).encode()
    got = decode_slice_event(line)
    assert got is not None
    rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
    assert got == (kind, rv, *plain(body))


@settings(max_examples=300)
@given(body=slices(weird=True), kind=st.sampled_from(["ADDED", "MODIFIED", "BOOKMARK", "ERROR"]))
def test_any_event_decodes_as_the_plain_path_or_steps_aside(
    body: dict[str, Any], kind: str
) -> None:
    line = json.dumps({"type": kind, "object": body}).encode()
    got = decode_slice_event(line)
    if got is not None:
        assert kind in ("ADDED", "MODIFIED")
        assert got[2:] == plain(body)


def test_bookmarks_errors_and_garbage_step_aside() -> None:
    bookmark = {"type": "BOOKMARK", "object": {"kind": "EndpointSlice", "metadata": {}}}
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    for event in (bookmark, gone):
        assert decode_slice_event(json.dumps(event).encode()) is None
    assert decode_slice_event(b"{not json") is None
    assert decode_slice_event(b'{"type": "ADDED"}') is None


@given(items=st.lists(slices(), max_size=4), token=st.sampled_from(["", "abc"]))
def test_a_list_page_decodes_exactly_as_the_plain_path(
    items: list[dict[str, Any]], token: str
) -> None:
    data = json.dumps(
        {"kind": "EndpointSliceList", "metadata": {"continue": token, "resourceVersion": "7"},
         "items": items}
    ).encode()  # fmt: skip
    got = decode_slice_list(data)
    assert got == ([plain(i) for i in items], token, "7")


def test_a_list_page_with_a_field_of_another_type_steps_aside() -> None:
    data = json.dumps({"items": [{"endpoints": [{"addresses": "10.0.0.1"}]}]}).encode()
    assert decode_slice_list(data) is None
