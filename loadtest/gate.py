"""`nox -s gate`: fail when a change makes the server slower than its reference.

Two metrics: instructions per request under callgrind (deterministic: a tight tolerance, what CI
gates on) and wall-clock req/s normalised by a CPU calibration loop (noisy: a loose tolerance).
The reference is `baseline.json` when it was measured in this same environment; otherwise, or
with `--against REV`, that revision is checked out in a git worktree and measured in this run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtest.environment import describe
from loadtest.instructions import InstructionsError, instructions_per_request
from loadtest.wallclock import normalised_throughput

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE = Path(__file__).with_name("baseline.json")
#: Wide enough that the table never wraps in a CI log (rich assumes 80 columns there).
TABLE_WIDTH = 110


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    #: Relative change allowed in the bad direction before the gate fails.
    tolerance: float
    #: True when a larger value is worse (instructions), False when smaller is (throughput).
    higher_is_worse: bool
    measure: Callable[[Path], float]


METRICS = {
    "instructions": Metric(
        "instructions_per_request", "instructions", 0.03, True, instructions_per_request
    ),
    "wallclock": Metric(
        "normalised_req_per_s", "req/s per M loops/s", 0.20, False, normalised_throughput
    ),
}
PACKAGES = ("h2", "hpack", "hyperframe", "uvloop")


class GateError(Exception):
    """The gate cannot measure or compare; the message is one line for the user."""


@dataclass(frozen=True)
class Check:
    metric: Metric
    reference: float
    current: float

    @property
    def change(self) -> float:
        return self.current / self.reference - 1

    @property
    def regressed(self) -> bool:
        worse = self.change if self.metric.higher_is_worse else -self.change
        return worse > self.metric.tolerance


def environment() -> dict[str, str]:
    """What instruction counts depend on: the interpreter, the libraries, the OS and valgrind."""
    valgrind = shutil.which("valgrind")
    valgrind_version = (
        subprocess.run([valgrind, "--version"], capture_output=True, text=True).stdout.strip()
        if valgrind
        else "absent"
    )
    return describe(PACKAGES, valgrind=valgrind_version)


def git(*args: str, cwd: Path = REPO_ROOT) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise GateError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


@contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """`revision` checked out in a temporary git worktree, removed afterwards."""
    commit = git("rev-parse", "--verify", f"{revision}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="osmium-gate-") as folder:
        path = Path(folder) / "tree"
        git("worktree", "add", "--detach", str(path), commit)
        try:
            yield path
        finally:
            git("worktree", "remove", "--force", str(path))


def measure(source: Path, metrics: list[Metric], console: Console) -> dict[str, float]:
    values = {}
    for metric in metrics:
        console.print(f"measuring {metric.name} of {source} ...")
        try:
            values[metric.name] = metric.measure(source)
        except InstructionsError as error:
            raise GateError(str(error)) from None
    return values


def reference_values(
    arguments: argparse.Namespace,
    metrics: list[Metric],
    console: Console,
    measure_revision: Callable[[str, list[Metric], Console], dict[str, float]],
) -> tuple[dict[str, float], str]:
    """The values to compare against and where they come from."""
    if arguments.against:
        values = measure_revision(arguments.against, metrics, console)
        return values, f"{arguments.against} (measured now)"
    baseline = load_baseline(arguments.baseline)
    names = {metric.name for metric in metrics}
    if baseline["environment"] == environment() and names <= baseline["metrics"].keys():
        return baseline["metrics"], f"{arguments.baseline.name} ({baseline['revision'][:12]})"
    revision = baseline["revision"]
    console.print(f"environment differs from {arguments.baseline.name}: measuring {revision[:12]}")
    return measure_revision(revision, metrics, console), f"{revision[:12]} (measured now)"


def measure_revision(revision: str, metrics: list[Metric], console: Console) -> dict[str, float]:
    with worktree(revision) as path:
        return measure(path, metrics, console)


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GateError(f"no baseline at {path}: run the gate with --update-baseline") from None
    except json.JSONDecodeError as error:
        raise GateError(f"{path} is not valid JSON: {error}") from None


def write_baseline(path: Path, values: dict[str, float]) -> None:
    baseline = {
        "revision": git("rev-parse", "HEAD"),
        "environment": environment(),
        "metrics": values,
    }
    path.write_text(json.dumps(baseline, indent=2) + "\n")


def report(console: Console, checks: list[Check], source: str) -> None:
    table = Table(title=f"performance gate against {source}")
    for column in ("metric", "reference", "current", "change", "tolerance", "result"):
        table.add_column(column, justify="left" if column in ("metric", "result") else "right")
    for check in checks:
        metric = check.metric
        bad = "+" if metric.higher_is_worse else "-"
        table.add_row(
            f"{metric.name} ({metric.unit})",
            f"{check.reference:,.1f}",
            f"{check.current:,.1f}",
            f"{check.change:+.2%}",
            f"{bad}{metric.tolerance:.0%}",
            "[red]REGRESSED[/red]" if check.regressed else "[green]ok[/green]",
        )
    console.print(table)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gate", description=__doc__)
    parser.add_argument(
        "--metric", choices=sorted(METRICS), action="append",
        help="measure only this metric (repeatable; default: all)",
    )  # fmt: skip
    parser.add_argument("--against", metavar="REV", help="measure REV now and compare with it")
    parser.add_argument("--baseline", type=Path, default=BASELINE, help="baseline JSON file")
    parser.add_argument(
        "--update-baseline", action="store_true", help="measure and rewrite the baseline"
    )
    return parser.parse_args(argv)


def gate(arguments: argparse.Namespace, console: Console) -> int:
    metrics = [METRICS[name] for name in (arguments.metric or sorted(METRICS))]
    if arguments.update_baseline:
        values = measure(REPO_ROOT, metrics, console)
        write_baseline(arguments.baseline, values)
        console.print(f"baseline written: {arguments.baseline}")
        return 0
    reference, source = reference_values(arguments, metrics, console, measure_revision)
    current = measure(REPO_ROOT, metrics, console)
    checks = [Check(m, reference[m.name], current[m.name]) for m in metrics]
    report(console, checks, source)
    regressed = [check.metric.name for check in checks if check.regressed]
    if regressed:
        console.print(f"gate: FAILED: {', '.join(regressed)} regressed past tolerance")
        return 1
    console.print("gate: passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    console = Console(width=TABLE_WIDTH)
    try:
        return gate(parse_arguments(argv), console)
    except GateError as error:
        print(f"gate: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
