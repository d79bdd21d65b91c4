"""`oasis-autoscaler simulate` as a user runs it: the shipped traces, variants, --upstream,
--json, --plot, and bad traces refused with exit 2 and the field named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main

TRACES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "traces"


def simulate(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("oasis-autoscaler")), "simulate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_trace_and_a_variant_side_by_side_with_upstream(tmp_path: Path) -> None:
    plot = tmp_path / "runs.png"
    run = simulate(
        TRACES / "three-analyses.yaml",
        TRACES / "variants" / "chunks-per-worker-2.yaml",
        "--upstream",
        "--json",
        "--plot",
        plot,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    assert [(r["run"], r["rules"]) for r in results] == [
        ("three-analyses", "ours"),
        ("three-analyses", "upstream"),
        ("cpw-2", "ours"),
        ("cpw-2", "upstream"),
    ]
    for result in results:
        (model,) = result["models"]
        # 3 analyses x (split + 15 chunks + join).
        assert (model["analyses"], model["sub_tasks"]) == (3, 51)
        assert model["peak_workers"] == 10
        assert result["worker_seconds"] > 0
    # Chunks wait for all 10 workers either way (the cap), so both hold 10 while they wait and
    # end as soon; fewer chunks per worker never makes the run slower.
    assert results[2]["makespan_seconds"] <= results[0]["makespan_seconds"]
    # Ours is within 2 % of upstream's makespan on both.
    for ours, upstream in ((results[0], results[1]), (results[2], results[3])):
        assert ours["makespan_seconds"] <= 1.02 * upstream["makespan_seconds"]
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["piwind-10", "chaz", "three-analyses", "fleet"])
def test_every_shipped_trace_runs(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(TRACES / f"{name}.yaml")]) == 0
    out = capsys.readouterr().out
    assert "Totals per run" in out and name in out


def test_the_chaz_trace_is_chunked_as_the_seed_says(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(TRACES / "chaz.yaml"), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    # 43 lookup chunks and 39 loss chunks, each stage with its split and its join.
    assert result["models"][0]["sub_tasks"] == 43 + 2 + 39 + 2


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("models: {M: {}}\nanalyses: [{model: M, events: 0}]\n", ".yaml", "analyses.0.events"),
        (
            "models: {M: {scaling: {worker_count_mx: 3}}}\nanalyses: [{model: M, events: 5}]\n",
            ".yaml",
            "models.M.scaling.worker_count_mx",
        ),
        ('{"models": {"M": {}}, "analyses": [{"model": "X", "events": 5}]}', ".json", "'X'"),
        ("models: [\n", ".yaml", "is not valid YAML"),
        ("[1, 2]", ".json", "must hold a mapping"),
        ("models: {M: {}}\nanalyses: []\n", ".yaml", "analyses: List should have at least 1"),
    ],
)
def test_a_bad_trace_exits_2_naming_the_field(
    tmp_path: Path, text: str, suffix: str, message: str
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    run = simulate(path)
    assert run.returncode == 2
    assert message in run.stderr
    assert run.stdout == ""


def test_a_missing_file_exits_2(tmp_path: Path) -> None:
    run = simulate(tmp_path / "nowhere.yaml")
    assert run.returncode == 2 and "cannot read" in run.stderr
