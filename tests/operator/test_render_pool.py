"""The render pool: hostile templates end in their worker, under its limits, and the pool goes on.

No control plane: real worker processes, real ``resource`` limits. Every
hostile case checks four things: the reason (``RenderTimeout``,
``RenderMemoryLimit`` or the sandbox's own error), the template named, the
parent's RSS unmoved, and the pool still rendering good templates after.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kuberesolver.core.snapshot import Endpoint, Snapshot, TargetRef
from kuberesolver.operator.logic.render import RenderError, render_templates, template_context
from kuberesolver.operator.sandbox.render_pool import RenderPool
from kuberesolver.operator.settings import Settings, SettingsError

SNAP = Snapshot(
    target=TargetRef("greeter", "ns", "grpc", "grpc", 8080),
    revision=7,
    endpoints=tuple(Endpoint(f"10.0.0.{i}", 50051, ready=i % 3 != 0) for i in range(1, 40)),
    service_config={"loadBalancingConfig": [{"round_robin": {}}]},
)
CTX = template_context(SNAP, "greeter-target", "ns")
GOOD = {
    "list.txt": "{% for e in readyEndpoints %}{{ e.address }}:{{ e.port }}\n{% endfor %}",
    "meta.txt": "{{ serverName }} r{{ revision }} {{ grpcTarget.name }} ünïcode",
    "all.json": "{{ endpoints | tojson }}",
}
RSS_SLACK = 8 * 2**20
"""The parent may move a little (allocator noise); a hostile render would move it by gigabytes."""

RANGE = "range(100000)"  # the sandbox's largest range


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def still_renders(pool: RenderPool) -> None:
    assert await pool.render(GOOD, CTX) == render_templates(GOOD, CTX)


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    """Poll ``condition`` until it holds (a condition, not a sleep)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def full(pool: RenderPool) -> None:
    """Wait until a killed worker's replacement is up."""
    await until(lambda: len(pool.pids) == pool.workers, "every worker up")


@pytest.fixture
async def cpu_pool() -> AsyncIterator[RenderPool]:
    """1 s of CPU per render, and a wall clock far enough away that CPU is what ends it."""
    async with RenderPool(2, cpu_s=1, memory_mib=256, timeout_ms=120_000) as pool:
        yield pool


@pytest.fixture
async def memory_pool() -> AsyncIterator[RenderPool]:
    """128 MiB of address space per worker; CPU and wall clock far enough away."""
    async with RenderPool(2, cpu_s=30, memory_mib=128, timeout_ms=120_000) as pool:
        yield pool


async def hostile(pool: RenderPool, source: str) -> RenderError:
    """Render ``source`` as key ``evil.txt`` beside a good key; checks the common promises."""
    await full(pool)
    before_rss, before_pids, before_spawned = rss(), pool.pids, pool.spawned
    with pytest.raises(RenderError) as caught:
        await pool.render({"a-good.txt": "fine", "evil.txt": source}, CTX)
    err = caught.value
    assert err.key == "evil.txt", err
    assert str(err).startswith("evil.txt: ")
    assert rss() - before_rss < RSS_SLACK
    if err.reason in ("RenderTimeout", "RenderMemoryLimit"):
        # the worker that breached is gone, and replaced
        await full(pool)
        assert pool.spawned == before_spawned + 1
        assert set(pool.pids) != set(before_pids)
    await still_renders(pool)
    return err


# --- good templates and ordinary errors: as in-process ---------------------------------------


async def test_good_templates_render_as_in_process(cpu_pool: RenderPool) -> None:
    await still_renders(cpu_pool)
    assert await cpu_pool.render({}, CTX) == {}


@pytest.mark.parametrize(
    "source",
    [
        "{{ missing }}",
        "{% for %}",
        "{{ ''.__class__.__mro__ }}",
        "{{ 'x' * 10000000 }}",
        "{{ 1 / 0 }}",
        "{% for i in range(2000) %}{{ 'y' * 1000 }}{% endfor %}",
    ],
)
async def test_template_errors_are_the_same_as_in_process(
    cpu_pool: RenderPool, source: str
) -> None:
    templates = {"good": "ok", "bad.txt": source}
    with pytest.raises(RenderError) as local:
        render_templates(templates, CTX)
    pids = cpu_pool.pids
    with pytest.raises(RenderError) as remote:
        await cpu_pool.render(templates, CTX)
    assert (remote.value.reason, remote.value.key, str(remote.value)) == (
        local.value.reason,
        local.value.key,
        str(local.value),
    )
    assert cpu_pool.pids == pids  # an ordinary error keeps its worker


async def test_no_templates_need_no_worker() -> None:
    pool = RenderPool(1)
    assert await pool.render({}, CTX) == {}
    assert pool.spawned == 0
    await pool.aclose()


# --- CPU without output ----------------------------------------------------------------------


CPU_BOMBS = {
    "two loops": f"{{% for a in {RANGE} %}}{{% for b in {RANGE} %}}{{% endfor %}}{{% endfor %}}",
    "three loops": f"{{% for a in {RANGE} %}}{{% for b in {RANGE} %}}{{% for c in {RANGE} %}}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "loop over a filter": f"{{% for a in {RANGE} %}}{{{{ ({RANGE} | sum) and '' }}}}{{% endfor %}}",
    "loop over a sort": f"{{% for a in {RANGE} %}}"
    f"{{% set s = {RANGE} | list | sort(reverse=true) %}}{{% endfor %}}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
    "{% endmacro %}{{ f(60) }}",
    "exponential recursive loop": "{% for a in [1, 1] recursive %}"
    "{% if loop.depth < 60 %}{{ loop([1, 1]) and '' }}{% endif %}{% endfor %}",
    "while-like loop with a namespace": "{% set ns = namespace(n=0) %}"
    f"{{% for a in {RANGE} %}}{{% for b in {RANGE} %}}{{% set ns.n = ns.n + 1 %}}"
    "{% endfor %}{% endfor %}{{ ns.n }}",
}


@pytest.mark.parametrize("name", list(CPU_BOMBS))
async def test_cpu_without_output_is_stopped_by_the_cpu_limit(
    cpu_pool: RenderPool, name: str
) -> None:
    err = await hostile(cpu_pool, CPU_BOMBS[name])
    assert err.reason == "RenderTimeout"
    assert "1 s of CPU" in str(err)  # the kernel's limit, not the far wall clock


async def test_wall_clock_limit_stops_a_render() -> None:
    async with RenderPool(1, cpu_s=600, timeout_ms=300) as pool:
        started = time.monotonic()
        err = await hostile(pool, CPU_BOMBS["two loops"])
        elapsed = time.monotonic() - started
    assert err.reason == "RenderTimeout"
    assert "300 ms (wall clock)" in str(err)
    assert elapsed < 0.3 + 5  # the limit plus a worker's replacement on a loaded machine


# --- memory ----------------------------------------------------------------------------------

BIG = "'x' * 1000000"  # the largest repetition the sandbox allows
MEMORY = "RenderMemoryLimit"

MEMORY_BOMBS: dict[str, tuple[str, set[str]]] = {
    # string filters
    "center": ("{{ 'x' | center(10**9) }}", {MEMORY}),
    "format filter": ("{{ '%1000000000d' | format(1) }}", {MEMORY}),
    "% operator": ("{{ '%1000000000d' % 1 }}", {MEMORY}),
    "str.format": ("{{ '{:>1000000000}'.format('x') }}", {MEMORY}),
    "indent": ("{{ ('a\\n' * 100000) | indent(10000) }}", {MEMORY}),
    "indent first": ("{{ 'a' | indent(10**9, first=true) }}", {MEMORY}),
    "join": (f"{{{{ {RANGE} | join({BIG}) }}}}", {MEMORY}),
    "replace": (f"{{{{ ({BIG}) | replace('x', {BIG}) }}}}", {MEMORY}),
    "wordwrap": (f"{{{{ ('x ' * 500000) | wordwrap(1, wrapstring={BIG}) }}}}", {MEMORY}),
    "map center": (f"{{{{ {RANGE} | map('string') | map('center', 100000) | join }}}}", {MEMORY}),
    "string": (f"{{{{ ([{RANGE} | list] * 1000) | string | length }}}}", {MEMORY, "RenderTimeout"}),
    "tojson": (f"{{{{ ([{RANGE} | list] * 1000) | tojson | length }}}}", {MEMORY, "RenderTimeout"}),
    # operators in loops
    "~ in a loop": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
        {MEMORY},
    ),
    "+ on strings in a loop": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s | length }}",
        {MEMORY},
    ),
    "+ on lists in a loop": (
        "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}"
        "{% endfor %}{{ ns.l | length }}",
        {MEMORY},
    ),
    "** chained": ("{{ (((2 ** 1024) ** 1024) ** 1024) % 7 }}", {MEMORY}),
    # list filters
    "batch": ("{{ range(10) | batch(10**9, fill_with='x') | list | length }}", {MEMORY}),
    "slice": ("{{ range(10) | slice(10**9, fill_with='x') | list | length }}", {MEMORY}),
    "list sort unique": (
        f"{{{{ ({RANGE} | list * 10) | sort | unique | list | length }}}}",
        {MEMORY},
    ),
    # the sandbox's own refusals
    "* on a string": ("{{ 'x' * 10**9 }}", {"SandboxViolation"}),
    "* on a list": ("{{ [1] * 10**9 }}", {"SandboxViolation"}),
    "** with a big exponent": ("{{ 2 ** 2000 }}", {"SandboxViolation"}),
    "range": ("{{ range(10**9) | list | length }}", {"TemplateError"}),
}


@pytest.mark.parametrize("name", list(MEMORY_BOMBS))
async def test_memory_through_filters_and_operators(memory_pool: RenderPool, name: str) -> None:
    source, reasons = MEMORY_BOMBS[name]
    err = await hostile(memory_pool, source)
    assert err.reason in reasons, err
    if err.reason == MEMORY:
        assert "128 MiB" in str(err)


# --- recursion -------------------------------------------------------------------------------

RECURSION = {
    "macro calls itself": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "through caller()": "{% macro f() %}{{ caller() }}{% endmacro %}"
    "{% macro g() %}{% call f() %}{{ g() }}{% endcall %}{% endmacro %}{{ g() }}",
    "self block": "{% block a %}{{ self.a() }}{% endblock %}",
    "recursive loop": "{% for a in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "deep parentheses": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}",
    "deep lists": "{{ " + "[" * 5000 + "]" * 5000 + " }}",
}


@pytest.mark.parametrize("name", list(RECURSION))
async def test_recursion_ends_in_the_worker(cpu_pool: RenderPool, name: str) -> None:
    err = await hostile(cpu_pool, RECURSION[name])
    assert err.reason == "TemplateError"
    assert "RecursionError" in str(err)


async def test_a_macro_that_doubles_its_output_breaches_a_limit() -> None:
    source = (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% else %}x{% endif %}"
        "{% endmacro %}{% set s = f(40) %}{{ s | length }}"
    )
    async with RenderPool(1, cpu_s=1, memory_mib=128, timeout_ms=120_000) as pool:
        err = await hostile(pool, source)
    assert err.reason in ("RenderTimeout", MEMORY)


# --- the filter matrix, by property ----------------------------------------------------------

FILTERS = [
    "center({n})",
    "indent({n}, first=true)",
    "format({n})",
    "truncate({n})",
    "wordwrap({n})",
    "replace('x', 'x' * {m})",
    "batch({n}, fill_with='x') | list",
    "slice({n}, fill_with='x') | list",
    "list",
    "join('x' * {m})",
    "map('center', {n}) | list",
    "string",
    "tojson",
    "e",
    "urlencode",
    "title",
    "reverse",
]
SIZES = [1, 1000, 10**6, 10**8, 10**9, 10**12]
KNOWN = {"RenderTimeout", "RenderMemoryLimit", "SandboxViolation", "TooLarge", "TemplateError"}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(
    chain=st.lists(st.sampled_from(FILTERS), min_size=1, max_size=3),
    n=st.sampled_from(SIZES),
    m=st.sampled_from([1, 1000, 1000000]),
    seed=st.sampled_from(["'x'", "'a b\\nc '", f"{BIG}", "range(1000) | list"]),
)
def test_any_filter_chain_ends_within_limits(
    chain: list[str], n: int, m: int, seed: str, pool_for_property: _PropertyPool
) -> None:
    filters = " | ".join(f.format(n=n, m=m) for f in chain)
    source = f"{{{{ ({seed}) | {filters} | length }}}}"
    before = rss()
    outcome = pool_for_property.run(source)
    assert rss() - before < RSS_SLACK
    if isinstance(outcome, RenderError):
        assert outcome.reason in KNOWN, outcome
    else:
        assert int(outcome["evil.txt"]) >= 0
    assert pool_for_property.run_good() == render_templates(GOOD, CTX)


class _PropertyPool:
    """One pool and one event loop for every Hypothesis example (examples are synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool = RenderPool(2, cpu_s=1, memory_mib=128, timeout_ms=20_000)
        self.loop.run_until_complete(self.pool.start())

    def run(self, source: str) -> dict[str, str] | RenderError:
        try:
            return self.loop.run_until_complete(self.pool.render({"evil.txt": source}, CTX))
        except RenderError as exc:
            return exc

    def run_good(self) -> dict[str, str]:
        return self.loop.run_until_complete(self.pool.render(GOOD, CTX))

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


@pytest.fixture
def pool_for_property() -> Iterator[_PropertyPool]:
    pool = _PropertyPool()
    yield pool
    pool.close()


# --- concurrency and lifecycle ---------------------------------------------------------------


async def test_good_renders_go_on_while_a_worker_burns_its_budget(cpu_pool: RenderPool) -> None:
    burning = asyncio.create_task(cpu_pool.render({"evil.txt": CPU_BOMBS["two loops"]}, CTX))
    await asyncio.sleep(0)  # let it take its worker
    for _ in range(5):
        await still_renders(cpu_pool)
        assert not burning.done(), "the good renders did not overlap the hostile one"
    with pytest.raises(RenderError, match="CPU"):
        await burning


async def test_renders_queue_for_a_free_worker() -> None:
    async with RenderPool(1, cpu_s=5) as pool:
        results = await asyncio.gather(*(pool.render(GOOD, CTX) for _ in range(6)))
        assert pool.spawned == 1
    assert all(r == render_templates(GOOD, CTX) for r in results)


async def test_a_cancelled_render_kills_its_worker(cpu_pool: RenderPool) -> None:
    pids = cpu_pool.pids
    task = asyncio.create_task(cpu_pool.render({"evil.txt": CPU_BOMBS["two loops"]}, CTX))
    await until(
        lambda: any(psutil.Process(p).cpu_times().user > 0.2 for p in pids), "a busy worker"
    )
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await full(cpu_pool)
    assert len(set(cpu_pool.pids) & set(pids)) == 1
    await still_renders(cpu_pool)


async def test_a_worker_killed_while_idle_is_replaced_quietly(cpu_pool: RenderPool) -> None:
    procs = [psutil.Process(pid) for pid in cpu_pool.pids]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    await until(lambda: not any(_running(p) for p in procs), "the workers dead")
    await still_renders(cpu_pool)  # not blamed on the template: rendered on fresh workers
    assert not set(cpu_pool.pids) & {p.pid for p in procs}


async def test_close_is_idempotent_and_ends_the_workers() -> None:
    pool = RenderPool(2)
    async with pool:
        await still_renders(pool)
        procs = [psutil.Process(p) for p in pool.pids]
    assert len(procs) == 2
    assert not any(_running(p) for p in procs)
    pool.close()
    await pool.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.render(GOOD, CTX)


async def test_workers_do_not_import_the_operator() -> None:
    async with RenderPool(1) as pool:
        (pid,) = pool.pids
        maps = psutil.Process(pid).memory_maps()
        assert not any("grpc" in m.path or "kopf" in m.path for m in maps)
        assert psutil.Process(pid).memory_info().rss < 64 * 2**20


# --- settings --------------------------------------------------------------------------------


def test_render_settings_resolve_with_units() -> None:
    s = Settings.resolve(environ={})
    assert (s.render_workers, s.render_cpu_s, s.render_memory_mib, s.render_timeout_ms) == (
        2,
        2,
        256,
        5000,
    )
    env = {
        "KUBERESOLVER_RENDER_WORKERS": "3",
        "KUBERESOLVER_RENDER_CPU_S": "4",
        "KUBERESOLVER_RENDER_MEMORY_MIB": "512",
        "KUBERESOLVER_RENDER_TIMEOUT_MS": "750",
    }
    s = Settings.resolve(environ=env, render_cpu_s=1)
    assert (s.render_workers, s.render_cpu_s, s.render_memory_mib, s.render_timeout_ms) == (
        3,
        1,
        512,
        750,
    )
    pool = RenderPool.from_settings(s)
    assert (pool.workers, pool.cpu_s, pool.memory_mib, pool.timeout_ms) == (3, 1, 512, 750)
    for name, bad in [
        ("KUBERESOLVER_RENDER_WORKERS", "0"),
        ("KUBERESOLVER_RENDER_CPU_S", "0.5"),
        ("KUBERESOLVER_RENDER_MEMORY_MIB", "16"),
        ("KUBERESOLVER_RENDER_TIMEOUT_MS", "soon"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.resolve(environ={name: bad})
