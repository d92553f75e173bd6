"""``KUBERESOLVER_LOG_FORMAT``: kopf's ``--log-format`` choices, checked like every setting."""

from __future__ import annotations

import json
import logging

import kopf
import pytest

from kuberesolver.operator.handlers import apply_log_format
from kuberesolver.operator.settings import LOG_FORMATS, Settings, SettingsError, log_format


def test_the_choices_are_kopfs() -> None:
    assert {f.name.lower() for f in kopf.LogFormat} == set(LOG_FORMATS)


@pytest.mark.parametrize(("raw", "want"), [("", ""), ("json", "json"), (" JSON ", "json"),
                                           ("plain", "plain"), ("full", "full")])  # fmt: skip
def test_a_format_is_read_from_the_environment(raw: str, want: str) -> None:
    assert log_format({"KUBERESOLVER_LOG_FORMAT": raw}) == want
    assert Settings.resolve(environ={"KUBERESOLVER_LOG_FORMAT": raw}).log_format == want


def test_an_unknown_format_is_refused_with_the_choices() -> None:
    with pytest.raises(SettingsError, match="KUBERESOLVER_LOG_FORMAT='xml' is not one of plain"):
        Settings.resolve(environ={"KUBERESOLVER_LOG_FORMAT": "xml"})


def test_json_keeps_the_level_and_formats_our_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        kopf.configure(verbose=False, quiet=False)  # as `kopf run` does first: text, INFO
        apply_log_format({"KUBERESOLVER_LOG_FORMAT": "json"})
        assert root.level == logging.INFO
        logging.getLogger("kuberesolver.operator").info("hello %s", "there")
        logging.getLogger("kuberesolver.operator").debug("not shown")
        line = capsys.readouterr().err.strip()
        record = json.loads(line)
        assert (record["message"], record["severity"]) == ("hello there", "info")
        apply_log_format({"KUBERESOLVER_LOG_FORMAT": "bogus"})  # left as it was (startup says why)
        logging.getLogger("kuberesolver.operator").info("still json")
        assert json.loads(capsys.readouterr().err)["message"] == "still json"
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
