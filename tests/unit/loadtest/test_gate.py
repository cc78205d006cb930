"""The regression gate decides from recorded result sets: what passes, what fails, and why."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from rich.console import Console

from loadtest import gate
from loadtest.gate import METRICS, Check, GateError, environment, reference_values

INSTRUCTIONS = METRICS["instructions"]
WALLCLOCK = METRICS["wallclock"]


@pytest.mark.parametrize(
    ("reference", "current", "regressed"),
    [
        (745_874.0, 746_031.0, False),  # two real runs of unchanged code: 0.02 % apart
        (745_874.0, 768_250.0, False),  # +3.0 %: at the tolerance, not past it
        (745_874.0, 783_168.0, True),  # +5 %: a server 5 % slower per request
        (745_874.0, 600_000.0, False),  # fewer instructions is an improvement
    ],
)
def test_instructions_gate_is_tight_and_one_sided(
    reference: float, current: float, regressed: bool
) -> None:
    assert Check(INSTRUCTIONS, reference, current).regressed is regressed


@pytest.mark.parametrize(
    ("reference", "current", "regressed"),
    [
        (961.0, 880.0, False),  # -8 %: wall-clock noise on a shared machine
        (961.0, 760.0, True),  # -21 %: past the loose tolerance
        (961.0, 1_200.0, False),  # faster is never a regression
    ],
)
def test_wallclock_gate_is_loose_and_one_sided(
    reference: float, current: float, regressed: bool
) -> None:
    assert Check(WALLCLOCK, reference, current).regressed is regressed


def arguments(tmp_path: Path, **overrides: object) -> argparse.Namespace:
    values = {"against": None, "baseline": tmp_path / "baseline.json", "metric": None}
    return argparse.Namespace(**{**values, **overrides})


def write(path: Path, environment_: dict[str, str], metrics: dict[str, float]) -> None:
    path.write_text(
        json.dumps({"revision": "a" * 40, "environment": environment_, "metrics": metrics})
    )


def never_measure(revision: str, metrics: list, console: Console) -> dict[str, float]:
    raise AssertionError(f"measured {revision} although the baseline applies")


def test_baseline_from_this_environment_is_used_as_is(tmp_path: Path) -> None:
    write(tmp_path / "baseline.json", environment(), {"instructions_per_request": 700_000.0})
    values, source = reference_values(
        arguments(tmp_path), [INSTRUCTIONS], Console(quiet=True), never_measure
    )
    assert values == {"instructions_per_request": 700_000.0}
    assert source == "baseline.json (aaaaaaaaaaaa)"


def test_baseline_from_another_environment_is_remeasured_at_its_revision(tmp_path: Path) -> None:
    other = {**environment(), "python": "3.99.0"}
    write(tmp_path / "baseline.json", other, {"instructions_per_request": 1.0})
    asked = []

    def measure(revision: str, metrics: list, console: Console) -> dict[str, float]:
        asked.append(revision)
        return {"instructions_per_request": 750_000.0}

    values, source = reference_values(
        arguments(tmp_path), [INSTRUCTIONS], Console(quiet=True), measure
    )
    assert asked == ["a" * 40]
    assert values == {"instructions_per_request": 750_000.0}
    assert source.endswith("(measured now)")


def test_against_measures_that_revision_even_with_a_matching_baseline(tmp_path: Path) -> None:
    write(tmp_path / "baseline.json", environment(), {"instructions_per_request": 1.0})
    asked = []

    def measure(revision: str, metrics: list, console: Console) -> dict[str, float]:
        asked.append(revision)
        return {"instructions_per_request": 2.0}

    values, _ = reference_values(
        arguments(tmp_path, against="HEAD~1"), [INSTRUCTIONS], Console(quiet=True), measure
    )
    assert asked == ["HEAD~1"] and values == {"instructions_per_request": 2.0}


def test_missing_baseline_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(GateError, match=r"no baseline at .*: run the gate with --update-baseline"):
        reference_values(arguments(tmp_path), [INSTRUCTIONS], Console(quiet=True), never_measure)


def recorded_gate(tmp_path: Path, current: float, monkeypatch: pytest.MonkeyPatch) -> int:
    """The whole gate on a recorded baseline and a recorded current measurement."""
    baseline = tmp_path / "baseline.json"
    write(baseline, environment(), {"instructions_per_request": 745_874.0})
    monkeypatch.setattr(gate, "measure", lambda *_: {"instructions_per_request": current})
    return gate.main(["--metric", "instructions", "--baseline", str(baseline)])


def test_gate_passes_unchanged_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = recorded_gate(tmp_path, 746_031.0, monkeypatch)
    output = capsys.readouterr().out
    assert code == 0
    assert "+0.02%" in output and "gate: passed" in output


def test_gate_fails_a_five_percent_slower_server_with_a_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = recorded_gate(tmp_path, 783_168.0, monkeypatch)
    output = capsys.readouterr().out
    assert code == 1
    assert "REGRESSED" in output and "+5.00%" in output and "+3%" in output
    assert "gate: FAILED: instructions_per_request regressed past tolerance" in output


def test_worktree_checks_out_a_revision_and_removes_it() -> None:
    with gate.worktree("HEAD") as path:
        assert (path / "osmium" / "__init__.py").is_file()
        assert str(path) in gate.git("worktree", "list")
    assert not path.exists()
    assert str(path) not in gate.git("worktree", "list")
