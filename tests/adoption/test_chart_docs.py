"""The chart's README is generated from its values.yaml (helm-docs) and is in sync with it."""

from __future__ import annotations

import re

import pytest
import yaml

from testenv.tools import UserShell
from tests.adoption.chart import CHART

pytestmark = pytest.mark.integration

GENERATE = "helm-docs --chart-search-root charts --sort-values-order file"


def test_the_chart_readme_is_generated_from_values(offline: UserShell) -> None:
    generated = offline.run(f"{GENERATE} --dry-run").stdout
    assert generated == (CHART / "README.md").read_text(), "stale: run `make chart-docs`"


def test_every_value_has_a_description() -> None:
    rows = re.findall(r"^\| (\S+) \| (\S+) \| (.+) \| (.*) \|$",
                      (CHART / "README.md").read_text(), re.MULTILINE)  # fmt: skip
    rows = [row for row in rows if row[0] != "Key"]  # the header
    assert rows
    undocumented = [key for key, _type, _default, description in rows if not description.strip()]
    assert not undocumented
    top = {key.split(".")[0] for key, *_ in rows}
    assert top == set(yaml.safe_load((CHART / "values.yaml").read_text()))
