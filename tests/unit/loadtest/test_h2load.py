"""loadtest.h2load: parse real h2load 1.52 reports and request logs exactly, and run h2load
against a real osmium.

The reports in data/ were captured from h2load against a fresh osmium (demo app) on 127.0.0.1;
the checks below re-derive each number from the text with their own regexes, not the parser's.
The `log_*` captures come with the `--log-file` h2load wrote in the same run (`.tsv`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import socket
import statistics
from pathlib import Path

import pytest

from loadtest import h2load
from tests.server_process import ServerProcess

DATA = Path(__file__).parent / "data"

# data/<name>.txt -> the command that printed it. PORT: a fresh `osmium serve` (1 worker unless
# said otherwise); BODY: 100,000 random bytes; TLS: a throwaway trustme certificate (not kept).
REPORTS = {
    "h2c_n2000_c10_m10": "h2load -n 2000 -c 10 -m 10 http://127.0.0.1:PORT/",
    "h2c_c100_m1_t2": "h2load -n 2000 -c 100 -m 1 -t 2 http://127.0.0.1:PORT/",
    "h2c_c1_m100": "h2load -n 2000 -c 1 -m 100 http://127.0.0.1:PORT/",
    "workers2_n2000_c8_m8_t2": "h2load -n 2000 -c 8 -m 8 -t 2 http://127.0.0.1:PORT/ (--workers 2)",
    "big_1mib": "h2load -n 8 -c 2 -m 2 http://127.0.0.1:PORT/big?size=1048576",
    "big_gb": "h2load -n 2 -c 2 http://127.0.0.1:PORT/big?size=600000000",
    "post_echo": "h2load -n 200 -c 4 -m 10 -d BODY http://127.0.0.1:PORT/echo",
    "tls_n1000_c4_m10": "h2load -n 1000 -c 4 -m 10 https://127.0.0.1:PORT/ (TLS)",
    "duration_2s": "h2load -D 2 -c 4 -m 4 http://127.0.0.1:PORT/",
    "duration_warmup": "h2load -D 1 --warm-up-time 1 -c 2 -m 2 http://127.0.0.1:PORT/",
    "mixed_status": "h2load -n 300 -c 3 -m 5 http://127.0.0.1:PORT/ .../missing .../big?size=x",
    "slow_inactivity_timeout": "h2load -n 6 -c 2 -T 1 http://127.0.0.1:PORT/slow?ms=3000",
    "connection_refused": "h2load -n 10 -c 2 http://127.0.0.1:1/ (nothing listens: exit 0)",
    "log_n400_c4_m4_t2": "h2load -n 400 -c 4 -m 4 -t 2 --log-file LOG http://127.0.0.1:PORT/",
    # --max-concurrent-streams 2: streams sent before h2load read the SETTINGS are refused.
    "log_refused_streams": "h2load -n 30 -c 2 -m 5 --log-file LOG http://127.0.0.1:PORT/ "
    ".../missing (osmium --max-concurrent-streams 2)",
    # hypercorn's status line "HTTP/1.1 200 " (empty reason): h2load reads no status, logs 0.
    "log_h1_empty_reason": "h2load -n 20 -c 2 --h1 --log-file LOG http://127.0.0.1:PORT/ "
    "(hypercorn, loadtest/hypercorn.toml)",
}
#: The request logs (data/<name>.tsv) that came with those reports.
LOGS = ("log_n400_c4_m4_t2", "log_refused_streams", "log_h1_empty_reason")
# Output that is not a report: h2load was interrupted before printing one.
INCOMPLETE = {
    "killed_midrun": "timeout -s INT 1 h2load -n 6 -c 2 http://127.0.0.1:PORT/slow?ms=3000",
}
# -D runs: req/s and bytes/s are over the main duration, not over "finished in" (+ warm-up).
MAIN_DURATION = {"duration_2s": 2.0, "duration_warmup": 1.0}
TIME_ROWS = {
    "time for request": "request_time",
    "time for connect": "connect_time",
    "time to 1st byte": "first_byte_time",
}
# Written independently of the parser: h2load's units as the nghttp2 source defines them.
SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
BYTES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}

Report = tuple[str, str, h2load.H2LoadResult]  # capture name, its text, what parse() made of it

needs_h2load = pytest.mark.skipif(h2load.which() is None, reason=h2load.INSTALL_HINT)


def text(name: str) -> str:
    return (DATA / f"{name}.txt").read_text()


def line(output: str, prefix: str) -> str:
    (found,) = [row for row in output.splitlines() if row.startswith(prefix)]
    return found


def seconds(token: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", token).groups()
    return float(number) * SECONDS[unit]


def size(token: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([KMG]?)B", token).groups()
    return float(number) * BYTES[unit]


def nghttp2_size(n: int) -> str:
    """util::utos_funit(n) + "B": binary multiples, two decimals rounded half away from zero."""
    for unit, scale in reversed(BYTES.items()):
        if unit and n >= scale:
            hundredths = math.floor(100 * (n / scale) + 0.5)
            return f"{hundredths // 100}.{hundredths % 100:02d}{unit}B"
    return f"{n}B"


@pytest.fixture(params=sorted(REPORTS))
def report(request: pytest.FixtureRequest) -> Report:
    output = text(request.param)
    return request.param, output, h2load.parse(output)


def test_every_capture_is_described() -> None:
    assert {path.stem for path in DATA.glob("*.txt")} == set(REPORTS) | set(INCOMPLETE)
    assert {path.stem for path in DATA.glob("*.tsv")} == set(LOGS)


def test_request_totals_equal_h2loads_own_line(report: Report) -> None:
    _, output, result = report
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", line(output, "requests:"))}
    assert dataclasses.asdict(result.requests) == counts
    assert result.requests.succeeded + result.requests.failed == result.requests.total


def test_status_codes_equal_h2loads_own_line(report: Report) -> None:
    _, output, result = report
    found = re.findall(r"(\d+) (\d)xx", line(output, "status codes:"))
    assert {f"s{digit}xx": int(n) for n, digit in found} == dataclasses.asdict(result.status_codes)
    statuses = result.status_codes
    assert statuses.s2xx + statuses.s3xx == result.requests.succeeded
    assert statuses.s4xx + statuses.s5xx <= result.requests.failed


def test_traffic_is_exact_and_printed_in_binary_units(report: Report) -> None:
    _, output, result = report
    pairs = re.findall(r"(\S+) \((\d+)\)", line(output, "traffic:"))
    traffic = result.traffic
    assert [int(exact) for _, exact in pairs] == [traffic.total, traffic.headers, traffic.data]
    # h2load's own rounding of each exact count reproduces what it printed: base 1024, not 1000.
    assert [printed for printed, _ in pairs] == [nghttp2_size(int(exact)) for _, exact in pairs]
    savings = re.search(r"space savings (-?[\d.]+)%", output)[1]
    assert traffic.header_space_savings == float(savings)


def test_time_rows_are_seconds(report: Report) -> None:
    _, output, result = report
    for label, attribute in TIME_ROWS.items():
        *tokens, within = line(output, label).split(":")[1].split()
        row = getattr(result, attribute)
        parsed = [row.min, row.max, row.mean, row.sd]
        assert parsed == pytest.approx([seconds(token) for token in tokens], rel=1e-12, abs=0)
        assert row.within_sd == float(within.rstrip("%"))


def test_rates_equal_the_printed_ones(report: Report) -> None:
    _, output, result = report
    finished = re.fullmatch(r"finished in (\S+), (\S+) req/s, (\S+)/s", line(output, "finished"))
    assert result.duration == pytest.approx(seconds(finished[1]), rel=1e-12)
    assert result.requests_per_second == float(finished[2])
    assert result.bytes_per_second == pytest.approx(size(finished[3]), rel=1e-12)
    *per_client, within = line(output, "req/s ").split(":")[1].split()
    rates = result.client_requests_per_second
    assert [rates.min, rates.max, rates.mean, rates.sd] == [float(value) for value in per_client]
    assert rates.within_sd == float(within.rstrip("%"))


def test_rates_agree_with_totals_over_the_measured_time(report: Report) -> None:
    name, _, result = report
    elapsed = MAIN_DURATION.get(name, result.duration)
    # Printed values are rounded to 2 decimals (and bytes/s truncated to whole bytes): <1% + 1B.
    # A decimal base would be 2.4% (K), 4.9% (M) or 7.4% (G) off, so this also pins base 1024.
    expected = result.traffic.total / elapsed
    assert abs(result.bytes_per_second - expected) <= 0.01 * expected + 1
    if result.requests.failed == 0:
        assert result.requests_per_second == pytest.approx(result.requests.done / elapsed, rel=0.01)


def test_values_read_off_the_text_by_eye() -> None:
    # "1.39ms     32.82ms ..." for request, "97us" connect min, "374.28KB/s"
    small = h2load.parse(text("h2c_n2000_c10_m10"))
    assert (small.request_time.min, small.request_time.max) == (0.00139, 0.03282)
    assert small.connect_time.min == 0.000097
    assert small.bytes_per_second == 374.28 * 1024
    # "finished in 1.42s, 1.41 req/s, 808.31MB/s", "traffic: 1.12GB (1200659464) total"
    big = h2load.parse(text("big_gb"))
    assert (big.duration, big.request_time.max, big.traffic.total) == (1.42, 1.42, 1200659464)
    assert big.bytes_per_second == pytest.approx(808.31 * 1024**2, rel=1e-12)
    # "finished in 7.01s, 0.57 req/s, 57B/s", request sd "208us"
    slow = h2load.parse(text("slow_inactivity_timeout"))
    assert (slow.duration, slow.requests_per_second, slow.bytes_per_second) == (7.01, 0.57, 57.0)
    assert slow.request_time.sd == 0.000208


def test_protocols(report: Report) -> None:
    name, _, result = report
    if name.startswith("tls"):
        assert result.application_protocol == "h2"
        assert result.tls == h2load.TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", "X25519 253 bits")
    elif name == "log_h1_empty_reason":
        assert (result.application_protocol, result.tls) == ("http/1.1", None)
    elif name == "connection_refused":
        assert (result.application_protocol, result.tls) == (None, None)
    else:
        assert (result.application_protocol, result.tls) == ("h2c", None)


def test_as_dict_round_trips_through_json(report: Report) -> None:
    _, output, result = report
    data = h2load.as_dict(result)
    assert json.loads(json.dumps(data)) == data
    assert list(data) == [f.name for f in dataclasses.fields(h2load.H2LoadResult)]
    assert data["requests"]["succeeded"] == result.requests.succeeded
    assert data["request_time"]["mean"] == result.request_time.mean
    assert data["raw"] == output


def test_failed_runs_are_reports_not_errors() -> None:
    refused = h2load.parse(text("connection_refused")).requests
    assert (refused.total, refused.started, refused.succeeded, refused.errored) == (10, 0, 0, 10)
    timed_out = h2load.parse(text("slow_inactivity_timeout")).requests
    assert (timed_out.succeeded, timed_out.failed, timed_out.timeout) == (4, 2, 2)
    mixed = h2load.parse(text("mixed_status"))
    assert (mixed.requests.succeeded, mixed.status_codes.s4xx, mixed.requests.errored) == (
        102,
        198,
        0,
    )


def test_duration_mode_starts_more_than_its_total() -> None:
    requests = h2load.parse(text("duration_2s")).requests
    assert requests.total == requests.done == 21484
    assert requests.started == 21500


def drop_line(output: str, prefix: str) -> str:
    return "".join(row for row in output.splitlines(True) if not row.startswith(prefix))


@pytest.mark.parametrize(
    ("output", "named"),
    [
        ("", "'finished in'"),
        (text("killed_midrun"), "'finished in'"),
        ("invalid URI: notaurl\n", "'finished in'"),
        (drop_line(text("h2c_n2000_c10_m10"), "req/s "), "'req/s'"),
        (drop_line(text("h2c_n2000_c10_m10"), "status codes:"), "'status codes'"),
        (drop_line(text("tls_n1000_c4_m10"), "Cipher:"), "'Cipher'"),
        (text("h2c_n2000_c10_m10").split("\ntraffic:")[0], "'traffic'"),
    ],
    ids=["empty", "killed", "usage-error", "no-req/s", "no-status", "no-cipher", "truncated"],
)
def test_incomplete_output_names_the_missing_line(output: str, named: str) -> None:
    with pytest.raises(h2load.H2LoadParseError, match=f"no {named} line"):
        h2load.parse(output)


def test_malformed_or_repeated_lines_are_errors() -> None:
    output = text("h2c_n2000_c10_m10")
    with pytest.raises(h2load.H2LoadParseError, match="malformed 'status codes' line"):
        h2load.parse(output.replace(" 2xx,", " 2XX,"))
    with pytest.raises(h2load.H2LoadParseError, match="malformed 'time for request' line"):
        h2load.parse(output.replace("1.39ms", "1.39ns"))
    with pytest.raises(h2load.H2LoadParseError, match="2 'finished in' lines"):
        h2load.parse(output + output)


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("0us", 0.0),
        ("91us", 0.000091),
        ("999us", 0.000999),
        ("1.00ms", 0.001),
        ("1.23ms", 0.00123),
        ("999.99ms", 0.99999),
        ("1.00s", 1.0),
        ("7.01s", 7.01),
        ("12345.67s", 12345.67),
    ],
)
def test_parse_duration(token: str, value: float) -> None:
    assert h2load.parse_duration(token) == value


@pytest.mark.parametrize("token", ["", "1", "1.5us", "1ms", "1.2ms", "1.23m", "1.00h", "-1us"])
def test_parse_duration_rejects_what_h2load_never_prints(token: str) -> None:
    with pytest.raises(h2load.H2LoadParseError, match="not an h2load duration"):
        h2load.parse_duration(token)


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("0B", 0),
        ("57B", 57),
        ("1023B", 1023),
        ("1.00KB", 1024),
        ("374.28KB", 383262.72),
        ("1.00MB", 1048576),
        ("692.63MB", 726275194.88),
        ("1.12GB", 1202590842.88),
        ("1024.00GB", 1 << 40),
    ],
)
def test_parse_size(token: str, value: float) -> None:
    assert h2load.parse_size(token) == value


@pytest.mark.parametrize("token", ["", "12", "KB", "1KB", "1.5B", "1.00TB", "1.00kB", "1.0 KB"])
def test_parse_size_rejects_what_h2load_never_prints(token: str) -> None:
    with pytest.raises(h2load.H2LoadParseError, match="not an h2load size"):
        h2load.parse_size(token)


def test_command_for_a_request_count() -> None:
    argv = h2load.command("http://127.0.0.1:8000/", requests=500, clients=4, streams=8, threads=2)
    assert argv == [
        "h2load",
        "-n",
        "500",
        "-c",
        "4",
        "-m",
        "8",
        "-t",
        "2",
        "http://127.0.0.1:8000/",
    ]


def test_command_for_a_duration_with_prefix_body_and_extra_args() -> None:
    argv = h2load.command(
        "https://127.0.0.1:8443/echo",
        duration=1.5,
        data_file="/tmp/body.bin",
        extra_args=["--warm-up-time", "1"],
        prefix=["taskset", "-c", "4-7"],
    )
    assert argv == [
        *("taskset", "-c", "4-7", "h2load", "-D", "1500ms"),  # h2load rejects "-D 1.5"
        *("-c", "1", "-m", "1", "-t", "1", "-d", "/tmp/body.bin", "--warm-up-time", "1"),
        "https://127.0.0.1:8443/echo",
    ]
    assert h2load.command("http://x/", duration=2.0)[1:3] == ["-D", "2"]


@pytest.mark.parametrize("limits", [{}, {"requests": 10, "duration": 1.0}])
def test_command_needs_exactly_one_limit(limits: dict) -> None:
    with pytest.raises(ValueError, match="exactly one of requests"):
        h2load.command("http://127.0.0.1:8000/", **limits)


def test_missing_h2load_says_how_to_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert h2load.which() is None
    with pytest.raises(h2load.H2LoadMissingError, match="nghttp2-client"):
        h2load.run("http://127.0.0.1:1/", requests=1)


@needs_h2load
def test_run_reports_h2loads_own_error() -> None:
    with pytest.raises(h2load.H2LoadError, match=r"(?s)exited with 1.*invalid URI: notaurl"):
        h2load.run("notaurl", requests=1)


@needs_h2load
def test_run_kills_h2load_at_the_timeout() -> None:
    # A socket that listens but never answers: h2load connects, sends its preface and waits.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with pytest.raises(h2load.H2LoadError, match=r"ran past 0\.5s and was killed"):
            h2load.run(url, requests=1, timeout=0.5)


@needs_h2load
def test_run_reports_output_that_is_not_a_report() -> None:
    # The prefix runs a shell that prints a partial report and ignores the h2load argv after it.
    partial = ["sh", "-c", "echo 'starting benchmark...'", "sh"]
    with pytest.raises(h2load.H2LoadError, match=r"(?s)no 'finished in' line.*starting benchmark"):
        h2load.run("http://127.0.0.1:1/", requests=1, prefix=partial)


@needs_h2load
def test_version() -> None:
    assert h2load.version().startswith("h2load nghttp2/")


@needs_h2load
def test_run_against_osmium(server: ServerProcess) -> None:
    result = h2load.run(f"{server.url}/", requests=500, clients=4, streams=4, timeout=60)
    assert result.requests.succeeded == result.status_codes.s2xx == 500
    assert result.requests.failed == 0
    assert result.traffic.data == 500 * len(b"hello world")
    assert result.application_protocol == "h2c"


@needs_h2load
def test_run_for_a_fractional_duration(server: ServerProcess) -> None:
    result = h2load.run(f"{server.url}/", duration=0.3, clients=2, streams=2, timeout=60)
    assert result.requests.succeeded == result.requests.total > 0
    assert result.requests.failed == 0


def test_command_with_a_request_log() -> None:
    argv = h2load.command("http://127.0.0.1:8000/", requests=5, log_file="/tmp/requests.tsv")
    assert argv[-3:] == ["--log-file", "/tmp/requests.tsv", "http://127.0.0.1:8000/"]


# -- the per-request log (--log-file) ----------------------------------------------------------


def log_text(name: str) -> str:
    return (DATA / f"{name}.tsv").read_text()


@pytest.mark.parametrize("name", LOGS)
def test_the_log_has_a_row_per_request_done(name: str) -> None:
    rows = h2load.parse_log(log_text(name))
    result = h2load.parse(text(name))
    assert len(rows) == result.requests.done
    fields = [line.split("\t") for line in log_text(name).splitlines()]
    assert rows == [tuple(int(value) for value in row) for row in fields]


def test_log_statuses_match_the_report() -> None:
    rows = h2load.parse_log(log_text("log_refused_streams"))
    result = h2load.parse(text("log_refused_streams"))
    statuses = [row.status for row in rows]
    assert statuses.count(200) == result.status_codes.s2xx == 12
    assert statuses.count(404) == result.status_codes.s4xx == 12
    # Refused streams: failed, errored, logged as -1; the rest were answered.
    assert statuses.count(h2load.FAILED_STREAM) == result.requests.errored == 6
    assert result.requests.answered == 24


def test_an_unread_http1_status_is_zero_but_answered() -> None:
    rows = h2load.parse_log(log_text("log_h1_empty_reason"))
    result = h2load.parse(text("log_h1_empty_reason"))
    assert {row.status for row in rows} == {0}
    assert (result.requests.succeeded, result.requests.failed) == (0, 20)
    assert result.requests.answered == 20  # responses, which h2load's req/s counts
    assert h2load.latency_percentiles(rows) is not None


def test_a_lost_connection_leaves_only_the_answered_requests() -> None:
    """uvicorn 0.54 on zttp dropped its connection under 100 streams: h2load counted the
    requests it never started as errored (not in `done`), so `done - errored` went negative."""
    requests = h2load.Requests(
        total=20000, started=4166, done=4136, succeeded=4066, failed=15934, errored=15934,
        timeout=0,
    )  # fmt: skip
    assert requests.answered == 4066


def test_log_timings_agree_with_the_report() -> None:
    """The log holds every request; the report's min and max are of the same requests."""
    rows = h2load.parse_log(log_text("log_n400_c4_m4_t2"))
    request_time = h2load.parse(text("log_n400_c4_m4_t2")).request_time
    seconds = [row.duration_us / 1e6 for row in rows]
    # The report prints two decimals of ms (or whole µs): within 10 µs of the logged values.
    assert min(seconds) == pytest.approx(request_time.min, abs=1e-5)
    assert max(seconds) == pytest.approx(request_time.max, abs=1e-5)
    assert statistics.fmean(seconds) == pytest.approx(request_time.mean, abs=1e-5)


def test_percentiles_of_the_answered_requests() -> None:
    rows = h2load.parse_log(log_text("log_refused_streams"))
    answered = sorted(row.duration_us / 1e6 for row in rows if row.status != -1)
    assert len(answered) == 24
    percentiles = h2load.latency_percentiles(rows)
    assert percentiles is not None
    assert percentiles.max == answered[-1]
    assert answered[0] <= percentiles.p50 <= percentiles.p90 <= percentiles.p99 <= answered[-1]
    # The median of 24 values: halfway between the 12th and 13th.
    assert percentiles.p50 == pytest.approx((answered[11] + answered[12]) / 2)


def test_percentiles_by_hand() -> None:
    rows = [h2load.LoggedRequest(0, 200, micros) for micros in range(1000, 101_000, 1000)]
    rows.append(h2load.LoggedRequest(0, h2load.FAILED_STREAM, 10**9))  # not a response: left out
    percentiles = h2load.latency_percentiles(rows)
    assert percentiles is not None
    # 1..100 ms, one each: interpolated between the nearest ranks.
    expected = (0.0505, 0.0901, 0.09901, 0.100)
    assert dataclasses.astuple(percentiles) == pytest.approx(expected, rel=1e-12)
    one = h2load.latency_percentiles([h2load.LoggedRequest(0, 200, 1500)])
    assert one == h2load.Percentiles(0.0015, 0.0015, 0.0015, 0.0015)
    assert h2load.latency_percentiles([h2load.LoggedRequest(0, -1, 5)]) is None
    assert h2load.latency_percentiles([]) is None


def test_extra_log_columns_are_allowed_and_an_empty_log_is_empty() -> None:
    assert h2load.parse_log("1\t200\t30\tlater\t\n") == [h2load.LoggedRequest(1, 200, 30)]
    assert h2load.parse_log("") == []


@pytest.mark.parametrize(
    "line",
    ["1796190291758529 200 1916", "1796190291758529\t200", "x\t200\t5", "1\t-2\t5", "1\t200\t-5"],
)
def test_a_malformed_log_row_names_its_line(line: str) -> None:
    with pytest.raises(h2load.H2LoadParseError, match=r"line 2 of the request log is malformed"):
        h2load.parse_log(f"1\t200\t3\n{line}\n")


@needs_h2load
def test_run_writes_a_fresh_log(server: ServerProcess, tmp_path: Path) -> None:
    """h2load appends to its log file; run() starts it empty, so it holds one run's rows."""
    log = tmp_path / "requests.tsv"
    log.write_text("stale\n")
    for _ in range(2):
        result = h2load.run(f"{server.url}/", requests=50, clients=2, streams=2, log_file=str(log))
        rows = h2load.read_log(log)
        assert len(rows) == result.requests.done == 50
        assert {row.status for row in rows} == {200}
