"""The psutil sampler sees a whole process tree, children included, and sums it; the tree's CPU
time counts children that exited and children forked after the first reading."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.sampler import SUMMED, SamplerProcess, TreeSampler, load, tree_cpu_seconds

PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


#: A parent that, per line on stdin, runs a child burning BURN_SECONDS of CPU: `exited` waits for
#: it to exit (reaped), `alive` leaves it running (until the parent's stdin closes).
BURN_SECONDS = 0.3
SPAWNER = f"""
import subprocess, sys
burn = "import sys, time\\nend = time.process_time() + {BURN_SECONDS}\\n"
burn += "while time.process_time() < end: pass\\nprint('burned', flush=True)\\nsys.stdin.read()"
children = []
for command in sys.stdin:
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    child.stdout.readline()
    if command.strip() == "exited":
        child.stdin.close()
        child.wait()
    else:
        children.append(child)
    print("done", flush=True)
for child in children:
    child.stdin.close()
    child.wait()
"""


@pytest.fixture
def process_tree() -> Iterator[tuple[int, int]]:
    """A parent process and its child, as (parent pid, child pid)."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        yield parent.pid, child_pid
    finally:
        subprocess.run(["kill", str(child_pid)], check=False)
        parent.kill()
        parent.wait()


def test_sample_covers_every_process_and_sums_them(process_tree: tuple[int, int]) -> None:
    parent_pid, child_pid = process_tree
    sample = TreeSampler(parent_pid).sample()
    rows = {row["pid"]: row for row in sample["processes"]}
    assert set(rows) == {parent_pid, child_pid}
    assert rows[parent_pid]["role"] == "acceptor"
    assert rows[child_pid]["role"] == "worker"
    assert all(row["rss"] > 0 and row["threads"] >= 1 and row["fds"] >= 3 for row in rows.values())
    for name in SUMMED:
        assert sample["total"][name] == sum(row[name] for row in rows.values())


def test_sampler_process_writes_samples_until_stopped(
    process_tree: tuple[int, int], tmp_path: Path
) -> None:
    parent_pid, _ = process_tree
    output = tmp_path / "samples.jsonl"
    with SamplerProcess(parent_pid, output, interval=0.01) as sampler:
        assert load(output)  # the baseline sample is written before the block starts
    assert sampler.process is not None and sampler.process.returncode == 0
    samples = load(output)
    times = [sample["t"] for sample in samples]
    assert times == sorted(times)
    assert all(len(sample["processes"]) == 2 for sample in samples)


def test_sampler_of_a_missing_process_fails_clearly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.sampler", "--root", "999999999", "--output",
         str(tmp_path / "x.jsonl")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "sampler: no process 999999999"


def test_tree_cpu_counts_exited_children_and_children_forked_later() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        before = tree_cpu_seconds(parent.pid)
        for burned, command in enumerate(("exited", "alive"), start=1):
            parent.stdin.write(f"{command}\n")
            parent.stdin.flush()
            assert parent.stdout.readline() == "done\n"
            assert tree_cpu_seconds(parent.pid) - before >= burned * BURN_SECONDS
    finally:
        parent.stdin.close()
        try:
            parent.wait(10)
        except subprocess.TimeoutExpired:
            parent.kill()
            parent.wait()
