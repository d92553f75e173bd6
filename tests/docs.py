"""What the docs claim, collected for the tests that run it (tests/package/test_docs.py and
tests/integration/test_docs.py).

- README.md: every ```python block. A block runs with the world its marker, an
  HTML comment on the line before it, asks for: none means a real gRPC health
  server behind the snapshot of target ``greeter.backend`` (unit);
  ``<!-- test: cluster -->`` means the real control plane (integration).
  A ``print(...)  # text`` line says what the output must contain.
- Module docstrings of kuberesolver/, testenv/ and demo/: every ``>>>``
  example, with doctest. The modules in :data:`CLUSTER_MODULES` start a
  control plane in their examples: they run in the integration folder.

Nothing is skipped: a marker nobody runs fails the unit test.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PACKAGES = ("kuberesolver", "testenv", "demo")
WORLDS = ("greeter", "cluster")
CLUSTER_MODULES = frozenset({"testenv.controlplane"})

_BLOCK = re.compile(
    r"(?:<!--\s*test:\s*(?P<world>[\w-]+)\s*-->\n)?```python\n(?P<code>.*?)```", re.DOTALL
)


@dataclass(frozen=True)
class Block:
    line: int
    world: str
    code: str

    def run(self) -> str:
        """Execute the block as a script of its own (fresh globals); what it printed.

        Each ``print(...)  # text`` line's ``text`` must be in the output.
        """
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(self.code, f"{README.name}:{self.line}", "exec"), {"__name__": "__main__"})
        for expected in re.findall(r"^\s*print\(.*\)\s*#\s*(.+)$", self.code, re.MULTILINE):
            assert expected.strip() in out.getvalue(), f"{expected!r} not in {out.getvalue()!r}"
        return out.getvalue()


def readme_blocks(world: str | None = None) -> list[Block]:
    """The README's Python blocks, in order; only those for ``world`` if given."""
    text = README.read_text()
    blocks = [
        Block(text.count("\n", 0, m.start("code")) + 1, m["world"] or "greeter", m["code"])
        for m in _BLOCK.finditer(text)
    ]
    return [b for b in blocks if world is None or b.world == world]


def modules_with_examples() -> list[str]:
    """Dotted names of the modules whose source holds a ``>>>`` example."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "_proto" in path.parts or ">>> " not in path.read_text():
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def run_doctests(module_name: str) -> doctest.TestResults:
    """Run one module's examples; the report names each failing example."""
    module = importlib.import_module(module_name)
    return doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True, verbose=False)
