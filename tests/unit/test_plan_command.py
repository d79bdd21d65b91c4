"""`oasis-autoscaler plan` and the command line around it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
CHAZ = ROOT / "docs" / "examples" / "chaz"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_chaz_example_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        "plan",
        "--scaling",
        str(CHAZ / "scaling.json"),
        "--chunking",
        str(CHAZ / "chunking.json"),
        "--locations",
        "85803",
        "--events",
        "38127",
        "--json",
    )
    assert status == 0
    plan = json.loads(out)
    assert [(s["stage"], s["chunks"]) for s in plan["stages"]] == [("lookup", 43), ("loss", 39)]
    dynamic = next(s for s in plan["strategies"] if s["strategy"] == "DYNAMIC_TASKS")
    assert dynamic == {
        "strategy": "DYNAMIC_TASKS",
        "configured": True,
        "idle": 0,
        "peak_workers": {"lookup": 5, "loss": 4},
    }


def test_three_analyses_of_fifteen_chunks_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        "plan",
        "--analyses",
        "3",
        "--events",
        "1447",
        "--fixed-analysis-chunks",
        "15",
        "--scaling-strategy",
        "DYNAMIC_TASKS",
        "--chunks-per-worker",
        "5",
    )
    assert status == 0
    assert "1,447 events" in out
    row = next(line for line in out.splitlines() if "* DYNAMIC_TASKS" in line)
    assert row.split("│")[-2].strip() == "9"


def test_flags_override_files(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys,
        "plan",
        "--chunking",
        str(CHAZ / "chunking.json"),
        "--dynamic-chunks-max",
        "10",
        "--locations",
        "85803",
        "--json",
    )
    assert status == 0
    assert json.loads(out)["stages"][0]["chunks"] == 10


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--events", "10", "--worker-count-min", "5", "--worker-count-max", "2"],
            "worker_count_min: must not be greater than worker_count_max (2)",
        ),
        (
            ["--events", "10", "--chunks-per-worker", "0"],
            "chunks_per_worker: Input should be greater",
        ),
        (["--events", "0"], "--events must be at least 1"),
        (["--analyses", "0", "--events", "3"], "--analyses must be at least 1"),
        ([], "give --locations, --events or both"),
        (["--events", "3", "--scaling", "/nonexistent/scaling.json"], "cannot read"),
    ],
)
def test_bad_input_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, "plan", *argv)
    assert status == 2
    assert message in " ".join(err.split())
    assert out == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"worker_count_mx": 3}', "worker_count_mx: Extra inputs are not permitted"),
        ('{"worker_count_max": true}', "worker_count_max: Input should be a valid integer"),
    ],
)
def test_bad_files_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "scaling.json"
    path.write_text(content)
    status, _, err = run(capsys, "plan", "--scaling", str(path), "--events", "5")
    assert status == 2
    assert message in " ".join(err.split())


def test_unknown_strategy_flag_is_refused_by_argparse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["plan", "--events", "3", "--scaling-strategy", "fixed"])
    assert caught.value.code == 2
    assert "invalid choice: 'fixed'" in capsys.readouterr().err


def test_console_script_help_and_version() -> None:
    exe = Path(sys.executable).with_name("oasis-autoscaler")
    assert (
        "plan" in subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    )
    version = subprocess.run([exe, "version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("oasis-autoscaler 0.")
