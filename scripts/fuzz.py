"""Coverage-guided fuzzing of the sans-IO cores with atheris (libFuzzer): `./scripts/nox -s fuzz`.

The targets, their seeds and oracle are in tests/fuzz/; this script runs them under libFuzzer
(one child process per target), sums up what it found, and replays saved inputs.

    ./scripts/nox -s fuzz -- --target h2 --seconds 600          # one target, longer
    ./scripts/nox -s fuzz -- --runs 100000 -- -max_len=16384    # after `--`: libFuzzer's flags
    python scripts/fuzz.py --replay .fuzz/crashes/h1-crash-<sha1>   # rerun one input, no atheris

Seeds are written at every run into .fuzz/corpus/<target>/, where libFuzzer keeps the inputs it
finds interesting; a failing input is saved in .fuzz/crashes/. Neither is committed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the targets live with the tests

#: Packages whose coverage guides libFuzzer: our cores and the python-hyper code under them.
INSTRUMENTED = ["osmium", "h2", "hpack", "hyperframe", "h11"]
#: First argument of the child process that runs libFuzzer on one target (see main()).
WORKER = "--libfuzzer-worker"


def _instrumented() -> contextlib.AbstractContextManager[object]:
    """atheris's import hook in a libFuzzer worker, so that the cores report coverage; elsewhere
    nothing, so that the targets import and run without atheris."""
    if __name__ == "__main__" and sys.argv[1:2] == [WORKER]:
        import atheris

        return atheris.instrument_imports(include=INSTRUMENTED)
    return contextlib.nullcontext()


with _instrumented():  # atheris instruments only what is first imported under its hook
    from tests.fuzz.seeds import write_dictionary, write_seeds
    from tests.fuzz.targets import TARGETS

FUZZ_DIR = Path(".fuzz")  # relative to the repository, where the fuzzer runs
#: Seconds one input may take before libFuzzer reports it as a finding (a hang, or a slow path).
INPUT_TIMEOUT = 10

STATUS = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/")
STAT = re.compile(r"^stat::(\w+):\s*(\d+)")
ARTIFACT = re.compile(r"Test unit written to (\S+)")
#: Seconds between the libFuzzer status lines passed on (it prints one per new input).
PROGRESS_EVERY = 10.0


@dataclass
class Report:
    """What one libFuzzer run printed that matters once it is over."""

    target: str
    coverage: int = 0
    features: int = 0
    corpus: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    artifact: str | None = None
    exit_status: int = 0

    def read(self, line: str) -> None:
        if match := STATUS.search(line):
            self.coverage, self.features, self.corpus = (int(group) for group in match.groups())
        elif match := STAT.match(line):
            self.stats[match[1]] = int(match[2])
        elif match := ARTIFACT.search(line):
            self.artifact = match[1]

    def summary(self) -> str:
        stats = self.stats
        return (
            f"fuzz {self.target}: {stats.get('number_of_executed_units', 0)} inputs, "
            f"{stats.get('average_exec_per_sec', 0)} exec/s, coverage {self.coverage} edges / "
            f"{self.features} features, corpus {self.corpus} inputs, "
            f"peak RSS {stats.get('peak_rss_mb', 0)} MB"
        )

    def finding(self) -> str | None:
        """One line on what went wrong, if anything did."""
        if self.artifact:
            return (
                f"fuzz {self.target}: FINDING: the input is in {self.artifact}; replay it with "
                f"python scripts/fuzz.py --target {self.target} --replay {self.artifact}"
            )
        if self.exit_status:
            return f"fuzz {self.target}: libFuzzer exited {self.exit_status}, no input saved"
        return None


class Relay:
    """Passes libFuzzer's output on, less atheris's line per instrumented module and all but one
    status line every PROGRESS_EVERY seconds."""

    def __init__(self) -> None:
        self._last_status = -PROGRESS_EVERY

    def shows(self, line: str) -> bool:
        if line.startswith("INFO: Instrumenting "):
            return False
        if line.startswith("#") and not ("INITED" in line or "DONE" in line):
            now = time.monotonic()
            if now - self._last_status < PROGRESS_EVERY:
                return False
            self._last_status = now
        return True


def fuzz(target: str, seconds: int, runs: int | None, libfuzzer_args: list[str]) -> Report:
    """One libFuzzer run on `target`, in a child process (libFuzzer exits when it is done)."""
    corpus = FUZZ_DIR / "corpus" / target
    write_seeds(target, REPO / corpus)
    (REPO / FUZZ_DIR / "crashes").mkdir(parents=True, exist_ok=True)
    dictionary = write_dictionary(target, REPO / FUZZ_DIR / f"{target}.dict")
    command = [sys.executable, str(Path(__file__).resolve()), WORKER, target, str(corpus)]
    command += [
        f"-max_total_time={seconds}",
        f"-timeout={INPUT_TIMEOUT}",
        f"-artifact_prefix={FUZZ_DIR / 'crashes' / target}-",
        f"-dict={dictionary.relative_to(REPO)}",
        "-print_final_stats=1",
    ]
    if runs is not None:
        command.append(f"-runs={runs}")
    report = Report(target)
    relay = Relay()
    with subprocess.Popen(
        [*command, *libfuzzer_args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            report.read(line)
            if relay.shows(line):
                sys.stderr.write(line)
    report.exit_status = process.returncode
    return report


def _work(target: str, libfuzzer_args: list[str]) -> None:
    """The child process: libFuzzer on one target, atheris's provider reading the inputs."""
    import atheris

    test_one_input = functools.partial(TARGETS[target], provider=atheris.FuzzedDataProvider)
    atheris.Setup([sys.argv[0], *libfuzzer_args], test_one_input)
    atheris.Fuzz()


def replay(target: str, paths: Iterable[str]) -> int:
    """Each input once, without libFuzzer: a finding raises here with its whole traceback.

    Without a target, the one a saved input's name starts with (.fuzz/crashes/h2-crash-...).
    """
    for path in paths:
        name = Path(path).name.split("-")[0] if target == "all" else target
        if name not in TARGETS:
            print(f"fuzz: which target is {path} for? Name it with --target", file=sys.stderr)
            return 2
        TARGETS[name](Path(path).read_bytes())
        print(f"fuzz {name}: {path}: no finding")
    return 0


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    ours, libfuzzer_args = argv, []
    if "--" in argv:
        split = argv.index("--")
        ours, libfuzzer_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="scripts/fuzz.py",
        description="atheris (libFuzzer) on osmium's sans-IO cores; after `--`: libFuzzer flags.",
    )
    parser.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    parser.add_argument("--seconds", type=int, default=60, help="per target (-max_total_time)")
    parser.add_argument("--runs", type=int, help="inputs per target at most (-runs)")
    parser.add_argument(
        "--replay", nargs="+", metavar="INPUT", help="run inputs once, no libFuzzer"
    )
    return parser.parse_args(ours), libfuzzer_args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [WORKER]:
        _work(argv[1], argv[2:])
        return 0
    args, libfuzzer_args = parse_args(argv)
    if args.replay:
        return replay(args.target, args.replay)
    targets = list(TARGETS) if args.target == "all" else [args.target]
    if importlib.util.find_spec("atheris") is None:
        print("fuzz: atheris is not installed: run ./scripts/nox -s fuzz", file=sys.stderr)
        return 2
    reports = [fuzz(target, args.seconds, args.runs, libfuzzer_args) for target in targets]
    for report in reports:
        print(report.summary())
    findings = [finding for report in reports if (finding := report.finding())]
    for finding in findings:
        print(finding)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
