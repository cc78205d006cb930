"""The fuzz targets and scripts/fuzz.py without atheris: inputs read back as written, each target
runs its seeds and mutations of them cleanly, and a core that misbehaves fails the oracle."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import h11
import pytest
from hyperframe.frame import DataFrame, HeadersFrame

from osmium.protocol.h1 import H1Connection
from osmium.protocol.h2 import ServerConnection
from tests.fuzz import inputs, seeds, targets
from tests.fuzz.oracle import PREFACE, SETTINGS, assert_well_formed, frame

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz.py"
MUTATIONS_PER_SEED = 25


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("osmium_fuzz_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


runner = _load(SCRIPT)


def mutate(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """One of libFuzzer's simpler moves: flip, insert, erase, truncate or splice."""
    buffer = bytearray(data)
    move = rng.randrange(5)
    where = rng.randrange(len(buffer) + 1)
    if move == 0 and buffer:
        buffer[where % len(buffer)] ^= 1 << rng.randrange(8)
    elif move == 1:
        buffer[where:where] = rng.randbytes(rng.randrange(1, 16))
    elif move == 2:
        del buffer[where : where + rng.randrange(1, 16)]
    elif move == 3:
        del buffer[where:]
    else:
        buffer[where:] = other[rng.randrange(len(other) + 1) :]
    return bytes(buffer)


def test_an_input_reads_back_as_it_was_written() -> None:
    builder = inputs.InputBuilder()
    builder.bool(True)
    builder.int_in_range(300, 0, 4095)
    builder.bytes(b"abc")
    builder.int_in_range(7, 5, 9)
    builder.int_in_range(0, 0, 0)
    source = inputs.PlainDataProvider(builder.build())
    assert source.ConsumeBool() is True
    assert source.ConsumeIntInRange(0, 4095) == 300
    assert source.ConsumeBytes(3) == b"abc"
    assert source.ConsumeIntInRange(5, 9) == 7
    assert source.ConsumeIntInRange(0, 0) == 0
    assert source.remaining_bytes() == 0


def test_the_plain_provider_reads_inputs_as_atheris_does() -> None:
    atheris = pytest.importorskip("atheris")
    rng = random.Random(7)
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(40))
        theirs, ours = atheris.FuzzedDataProvider(data), inputs.PlainDataProvider(data)
        while theirs.remaining_bytes():
            call = rng.randrange(3)
            if call == 0:
                assert theirs.ConsumeBool() == ours.ConsumeBool()
            elif call == 1:
                count = rng.randrange(10)
                assert theirs.ConsumeBytes(count) == ours.ConsumeBytes(count)
            else:
                low = rng.randrange(-3, 3)
                high = low + rng.choice([0, 1, 255, 256, 4095, 65_536, 2**40])
                assert theirs.ConsumeIntInRange(low, high) == ours.ConsumeIntInRange(low, high)
            assert theirs.remaining_bytes() == ours.remaining_bytes()


def test_the_seed_corpus_is_written_for_each_target(tmp_path: Path) -> None:
    h2_names = {path.name for path in seeds.write_seeds("h2", tmp_path / "h2")}
    wanted = {"get", "post", "ping", "settings", "rst", "goaway", "continuation"}
    assert {f"seed-{name}" for name in wanted} <= h2_names
    h1_names = {path.name for path in seeds.write_seeds("h1", tmp_path / "h1")}
    assert {"seed-get", "seed-post", "seed-chunked", "seed-h2c-upgrade"} <= h1_names
    assert all(path.read_bytes() for path in (tmp_path / "h2").iterdir())


@pytest.mark.parametrize("target", ["h2", "h1"])
def test_each_target_runs_its_seeds_and_mutations_cleanly(target: str, tmp_path: Path) -> None:
    one_input = targets.TARGETS[target]
    written = [path.read_bytes() for path in seeds.write_seeds(target, tmp_path)]
    rng = random.Random(target)
    for seed in written:
        one_input(seed)
        for _ in range(MUTATIONS_PER_SEED):
            one_input(mutate(seed, rng.choice(written), rng))
    one_input(b"")
    one_input(bytes(range(256)))


def _sent_by(monkeypatch: pytest.MonkeyPatch, core: type) -> list[bytes]:
    sent: list[bytes] = []
    data_to_send = core.data_to_send

    def recorded(self: object) -> bytes:
        data = data_to_send(self)
        sent.append(data)
        return data

    monkeypatch.setattr(core, "data_to_send", recorded)
    return sent


def test_the_http2_seeds_get_past_the_preface_and_are_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = _sent_by(monkeypatch, ServerConnection)
    targets.fuzz_h2(seeds.h2_seeds()["post"])
    frames = [parsed for data in sent for parsed in assert_well_formed(data)]
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in frames)
    assert any(isinstance(f, DataFrame) and "END_STREAM" in f.flags for f in frames)


def test_the_h2c_seed_upgrades_and_is_answered_over_http2(monkeypatch: pytest.MonkeyPatch) -> None:
    h1_sent = _sent_by(monkeypatch, H1Connection)
    h2_sent = _sent_by(monkeypatch, ServerConnection)
    targets.fuzz_h1(seeds.h1_seeds()["h2c-upgrade"])
    assert b"".join(h1_sent).startswith(b"HTTP/1.1 101 ")
    frames = [parsed for data in h2_sent for parsed in assert_well_formed(data)]
    assert any(isinstance(f, HeadersFrame) and f.stream_id == 1 for f in frames)


def test_the_oracle_rejects_truncated_frames() -> None:
    ping = frame(0x6, 0, 0, b"12345678")
    assert_well_formed(ping + ping)
    with pytest.raises(AssertionError, match="truncated frame body"):
        assert_well_formed(ping[:-1])
    with pytest.raises(AssertionError, match="truncated frame header"):
        assert_well_formed(ping + ping[:5])


def test_a_core_sending_a_truncated_frame_fails_the_http2_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_to_send = ServerConnection.data_to_send
    monkeypatch.setattr(ServerConnection, "data_to_send", lambda self: data_to_send(self)[:-1])
    with pytest.raises(AssertionError, match="truncated"):
        targets.fuzz_h2(seeds.h2_input([(PREFACE + SETTINGS, 0)], preface=False))


def test_an_undocumented_exception_of_the_http1_core_fails_the_http1_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(self: H1Connection, data: bytes) -> list:
        raise h11.LocalProtocolError("planted")

    monkeypatch.setattr(H1Connection, "receive", broken)
    with pytest.raises(h11.LocalProtocolError, match="planted"):
        targets.fuzz_h1(seeds.h1_seeds()["get"])


def test_replay_runs_saved_inputs_without_atheris(tmp_path: Path) -> None:
    paths = seeds.write_seeds("h2", tmp_path)
    assert runner.main(["--target", "h2", "--replay", *map(str, paths)]) == 0
    saved = tmp_path / "h1-crash-0123"
    saved.write_bytes(seeds.h1_seeds()["get"])
    assert runner.main(["--replay", str(saved)]) == 0  # the target its name starts with
    assert runner.main(["--replay", str(paths[0])]) == 2  # "seed-get": which target, then?


LIBFUZZER_OUTPUT = """\
#15\tINITED cov: 816 ft: 1731 corp: 14/706b exec/s: 0 rss: 50Mb
#23883\tDONE   cov: 1005 ft: 2783 corp: 247/12Kb lim: 4096 exec/s: 3980 rss: 51Mb
 === Uncaught Python exception: ===
artifact_prefix='.fuzz/crashes/h2-'; Test unit written to .fuzz/crashes/h2-crash-d22c39
stat::number_of_executed_units: 23883
stat::average_exec_per_sec:     3980
stat::peak_rss_mb:              51
"""


def test_a_libfuzzer_run_is_summed_up_in_one_line_and_a_finding_in_another() -> None:
    report = runner.Report("h2")
    for line in LIBFUZZER_OUTPUT.splitlines():
        report.read(line)
    assert report.summary() == (
        "fuzz h2: 23883 inputs, 3980 exec/s, coverage 1005 edges / 2783 features, "
        "corpus 247 inputs, peak RSS 51 MB"
    )
    finding = report.finding()
    assert finding is not None and ".fuzz/crashes/h2-crash-d22c39" in finding
    assert "\n" not in finding
    assert runner.Report("h1").finding() is None
    assert runner.Report("h1", exit_status=1).finding() == (
        "fuzz h1: libFuzzer exited 1, no input saved"
    )
