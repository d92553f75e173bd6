"""Rendering: the service config, the GrpcTarget's own Jinja2 templates, the size limit.

Templates run in Jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment` with
:class:`~jinja2.StrictUndefined`: an undefined name, a syntax error, an
attempt to reach Python internals (``''.__class__``) or an output that would
blow the ConfigMap size limit all raise :class:`RenderError`, whose ``reason``
and message go into the Rendered condition and an Event.

The context of a template is the snapshot document (``version``, ``target``,
``serverName``, ``revision``, ``endpoints``, ``serviceConfig``) plus
``readyEndpoints`` (ready and not terminating) and ``grpcTarget``
(``name``, ``namespace``). The ``tojson`` filter is available. Block tags
take their own line away (``trim_blocks`` and ``lstrip_blocks``), so a
``{% for %}`` on its own line leaves no blank lines behind.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import jinja2
import jinja2.sandbox
from jinja2.exceptions import SecurityError

from kuberesolver.core.policies import LB_POLICIES, ROUND_ROBIN, service_config_entry

if TYPE_CHECKING:  # at run time: only jinja2 and the stdlib policies (the render worker)
    from kuberesolver.core.snapshot import Snapshot

__all__ = [
    "MAX_CONFIGMAP_BYTES",
    "RenderError",
    "build_service_config",
    "check_size",
    "configmap_size",
    "dumps",
    "render_in_process",
    "render_templates",
    "template_context",
]

MAX_CONFIGMAP_BYTES: Final = 1024 * 1024
"""The apiserver's limit on a ConfigMap's data (keys plus values)."""


class RenderError(ValueError):
    """A template (or the whole output) that cannot be published."""

    def __init__(self, reason: str, message: str, key: str | None = None) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.reason = reason
        self.key = key


def build_service_config(load_balancing: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The gRPC service config: the policy's ``loadBalancingConfig``, then ``overrides`` merged in.

    The merge is deep for objects; any other value in ``overrides`` replaces
    the default (so ``overrides`` may set its own ``loadBalancingConfig``).
    """
    policy = load_balancing if load_balancing in LB_POLICIES else ROUND_ROBIN
    base: dict[str, Any] = {"loadBalancingConfig": [service_config_entry(policy)]}
    return _merge(base, overrides)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    """The sandbox, with ``*`` and ``**`` bounded so a template cannot allocate gigabytes."""

    intercepted_binops = frozenset(["*", "**"])

    def call_binop(
        self, context: jinja2.runtime.Context, operator_: str, left: Any, right: Any
    ) -> Any:
        if operator_ == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and len(seq) * n > MAX_CONFIGMAP_BYTES
                ):
                    raise SecurityError("repetition result exceeds the ConfigMap size limit")
            return operator.mul(left, right)
        if operator_ == "**":
            if isinstance(right, int) and right > 1024:
                raise SecurityError("the exponent is too large")
            return operator.pow(left, right)
        return super().call_binop(context, operator_, left, right)


def _environment() -> _Sandbox:
    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.policies["json.dumps_kwargs"] = {"sort_keys": True}
    return env


_ENV: Final = _environment()


def template_context(snapshot: Snapshot, name: str, namespace: str) -> dict[str, Any]:
    doc: dict[str, Any] = dict(snapshot.to_dict())
    doc["readyEndpoints"] = [e.to_dict() for e in snapshot.ready_endpoints]
    doc["grpcTarget"] = {"name": name, "namespace": namespace}
    return doc


def render_templates(
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    on_key: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Render every template; the first failure raises :class:`RenderError` (nothing partial).

    ``on_key`` is called with each key before its template is rendered. A
    ``MemoryError`` is not wrapped: the render worker reports it as its own.
    """
    out: dict[str, str] = {}
    budget = MAX_CONFIGMAP_BYTES
    for key in sorted(templates):
        if on_key is not None:
            on_key(key)
        try:
            template = _ENV.from_string(templates[key])
            parts: list[str] = []
            size = 0
            for chunk in template.generate(**context):
                size += len(chunk.encode("utf-8"))
                if size > budget:
                    raise RenderError(
                        "TooLarge",
                        f"the output exceeds the ConfigMap limit of {MAX_CONFIGMAP_BYTES} bytes",
                        key,
                    )
                parts.append(chunk)
        except (RenderError, MemoryError):
            raise
        except SecurityError as exc:
            raise RenderError("SandboxViolation", f"refused by the sandbox: {exc}", key) from exc
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(
                "TemplateSyntaxError", f"syntax error at line {exc.lineno}: {exc.message}", key
            ) from exc
        except jinja2.UndefinedError as exc:
            raise RenderError("UndefinedVariable", str(exc.message), key) from exc
        except Exception as exc:  # a template can raise nearly anything; report it all
            raise RenderError("TemplateError", f"{type(exc).__name__}: {exc}", key) from exc
        out[key] = "".join(parts)
        budget -= size
    return out


async def render_in_process(
    templates: Mapping[str, str], context: Mapping[str, Any]
) -> dict[str, str]:
    """:func:`render_templates` on the event loop (the default renderer; no isolation)."""
    return render_templates(templates, context)


def configmap_size(data: Mapping[str, str]) -> int:
    """The size the apiserver counts: every key plus every value, in bytes."""
    return sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in data.items())


def check_size(data: Mapping[str, str]) -> None:
    size = configmap_size(data)
    if size > MAX_CONFIGMAP_BYTES:
        raise RenderError(
            "TooLarge",
            f"the ConfigMap would hold {size} bytes, over the limit of {MAX_CONFIGMAP_BYTES}",
        )


def dumps(value: Any) -> str:
    """Deterministic JSON for a ConfigMap value."""
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
