"""The PrometheusRule in manifests/monitoring, checked and unit-tested by promtool.

The PrometheusRule is the source; its `spec` is a Prometheus rules file as it stands, written to
a temporary file for promtool. The unit tests (prometheus_rules.test.yaml) show every alert
firing and not firing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.servers import binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "manifests" / "monitoring" / "prometheus-rules.yaml"
UNIT_TESTS = Path(__file__).with_name("prometheus_rules.test.yaml")
ANNOTATIONS = {"summary", "description", "runbook"}
SEVERITIES = {"warning", "critical"}


def prometheus_rule() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(RULES.read_text())
    assert (document["apiVersion"], document["kind"]) == (
        "monitoring.coreos.com/v1",
        "PrometheusRule",
    )
    return document


def alerts() -> dict[str, dict[str, Any]]:
    return {
        rule["alert"]: rule
        for group in prometheus_rule()["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    # promtool comes with Debian's prometheus package (.ci/setup); missing, this is an error.
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, check=False, timeout=120
    )


def write_rules(folder: Path) -> Path:
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(prometheus_rule()["spec"], sort_keys=False))
    return path


def unit_tests(rules: Path) -> dict[str, Any]:
    """The unit tests, pointed at `rules`, each expected alert with its rule's runbook."""
    tests: dict[str, Any] = yaml.safe_load(UNIT_TESTS.read_text())
    tests["rule_files"] = [str(rules)]
    runbooks = {name: rule["annotations"]["runbook"] for name, rule in alerts().items()}
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            for expected in check["exp_alerts"]:
                expected["exp_annotations"] = {
                    **expected["exp_annotations"],
                    "runbook": runbooks[check["alertname"]],
                }
    return tests


def run_unit_tests(folder: Path, tests: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = folder / "rules.test.yaml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return promtool("test", "rules", str(path))


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(write_rules(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_every_alert_is_complete() -> None:
    for name, rule in alerts().items():
        assert rule.get("for"), f"{name}: no `for`"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == ANNOTATIONS, name
        assert "{{" not in rule["annotations"]["runbook"], f"{name}: the runbook is static text"


def test_the_unit_tests_pass(tmp_path: Path) -> None:
    result = run_unit_tests(tmp_path, unit_tests(write_rules(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tested: dict[str, set[bool]] = {}
    for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in case["alert_rule_test"]:
            tested.setdefault(check["alertname"], set()).add(bool(check["exp_alerts"]))
    assert tested == {name: {True, False} for name in alerts()}


def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation fails promtool: the passing run above means something."""
    tests = unit_tests(write_rules(tmp_path))
    first = tests["tests"][0]["alert_rule_test"]
    quiet = next(check for check in first if not check["exp_alerts"])
    loud = next(check for check in first if check["exp_alerts"])
    quiet["exp_alerts"] = loud["exp_alerts"]
    result = run_unit_tests(tmp_path, tests)
    assert result.returncode != 0
    assert quiet["alertname"] in result.stdout + result.stderr
