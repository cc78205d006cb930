"""Run nghttp2's h2load as a subprocess and parse its whole text report into typed, JSON-ready data.

Strict: one exact regex per line of h2load 1.52's report, so a changed or cut report fails loudly;
the same for its per-request `--log-file`, whose timings give latency percentiles.
"""

import dataclasses
import re
import shlex
import shutil
import statistics
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

DEFAULT_TIMEOUT = 300.0
INSTALL_HINT = "install Debian's nghttp2-client"
_TAIL_CHARS = 2000

# util::format_duration: whole microseconds below 1ms, else two decimals of ms or s.
_SECONDS_PER_UNIT = {"us": Decimal("0.000001"), "ms": Decimal("0.001"), "s": Decimal(1)}
# util::utos_funit: binary multiples (1K = 1024 bytes, up to G), two decimals; plain bytes below 1K.
_BYTES_PER_UNIT = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}

_DURATION = r"(?:\d+us|\d+\.\d\d(?:ms|s))"
_SIZE = r"(?:\d+|\d+\.\d\d[KMG])B"
_FIXED = r"-?\d+\.\d\d"  # std::fixed with setprecision(2)
_COUNT = r"(\d+)"
# One --log-file row: start (µs since the epoch), status, µs to the end of the response. Status -1
# is a failed stream; 0 an HTTP/1.1 status line h2load did not read (an empty reason phrase, as
# hypercorn sends). "More columns may be added later" (h2load --help): extra ones are allowed.
_LOG_ROW = re.compile(r"(\d+)\t(-1|\d+)\t(\d+)(?:\t[^\t]*)*")
FAILED_STREAM = -1


class H2LoadError(Exception):
    """h2load could not produce a report: bad arguments, a crash, a timeout, unparseable output."""


class H2LoadParseError(H2LoadError):
    """The text is not a complete h2load report; the message names the missing or malformed line."""


class H2LoadMissingError(H2LoadError):
    """No h2load on PATH, so callers can skip load tests with one clear reason."""


@dataclass(frozen=True)
class Requests:
    """The `requests:` line. succeeded + failed == total: failed includes requests never issued.

    In duration mode (-D) total equals done; started may exceed it (requests cut off at the end).
    """

    total: int
    started: int
    done: int
    succeeded: int  # stream closed cleanly with a 2xx or 3xx status
    failed: int
    errored: int  # a subset of failed: stream or connection errors, not bad statuses
    timeout: int

    @property
    def answered(self) -> int:
        """Requests that got a whole response, whatever its status. `errored` also counts the
        requests a lost connection never started (those are not in `done`), so it is taken off
        the failures, not off `done`."""
        return min(self.done, self.succeeded + self.failed - self.errored)


@dataclass(frozen=True)
class StatusCodes:
    """The `status codes:` line: responses per status class (s2xx counts 2xx)."""

    s2xx: int
    s3xx: int
    s4xx: int
    s5xx: int


@dataclass(frozen=True)
class Traffic:
    """The `traffic:` line, in exact bytes (h2load prints the exact count in parentheses)."""

    total: int
    headers: int
    data: int
    header_space_savings: float  # percent saved by HPACK, as printed


@dataclass(frozen=True)
class Distribution:
    """One row of the min/max/mean/sd table; time rows are in seconds, the req/s row in req/s."""

    min: float
    max: float
    mean: float
    sd: float
    within_sd: float  # percent of samples within one sd of the mean


@dataclass(frozen=True)
class TlsInfo:
    """What h2load reports about the first TLS handshake (absent for h2c)."""

    protocol: str
    cipher: str
    server_temp_key: str | None  # OpenSSL may not expose it


@dataclass(frozen=True)
class H2LoadResult:
    """Everything h2load's report says; `raw` keeps the text it came from."""

    duration: float  # seconds, "finished in"; in -D mode this includes --warm-up-time
    requests_per_second: float  # every cleanly closed stream, 4xx/5xx too; -D: main duration only
    bytes_per_second: float  # as printed: two decimals of KB/MB/GB, so ~0.005 units of precision
    requests: Requests
    status_codes: StatusCodes
    traffic: Traffic
    request_time: Distribution
    connect_time: Distribution
    first_byte_time: Distribution
    client_requests_per_second: Distribution
    application_protocol: str | None  # None when no connection was ever made
    tls: TlsInfo | None
    raw: str = field(repr=False)


def parse_duration(text: str) -> float:
    """Seconds from an h2load duration: whole `us` (`91us`), or `ms`/`s` with two decimals."""
    if re.fullmatch(_DURATION, text) is None:
        raise H2LoadParseError(f"not an h2load duration: {text!r}")
    number = text.rstrip("mus")
    return float(Decimal(number) * _SECONDS_PER_UNIT[text[len(number) :]])


def parse_size(text: str) -> float:
    """Bytes from an h2load size: whole bytes (`57B`), or K/M/G (powers of 1024), two decimals."""
    if re.fullmatch(_SIZE, text) is None:
        raise H2LoadParseError(f"not an h2load size: {text!r}")
    number = text.rstrip("KMGB")
    return float(Decimal(number) * _BYTES_PER_UNIT[text[len(number) : -1]])


def _optional(output: str, label: str, rest: str) -> re.Match[str] | None:
    """The single line `label` + `rest`, or None when no line starts with `label`.

    A line that starts with `label` but does not match, or a repeated line, raises: either means
    the report is not what this parser was written against, so guessing would give wrong numbers.
    """
    matches = list(re.finditer(f"^{re.escape(label)}{rest}$", output, re.MULTILINE))
    if len(matches) > 1:
        raise H2LoadParseError(f"{len(matches)} {label!r} lines: more than one h2load report?")
    if matches:
        return matches[0]
    near = re.search(f"^{re.escape(label)}.*$", output, re.MULTILINE)
    if near is not None:
        raise H2LoadParseError(f"malformed {label!r} line: {near[0]!r}")
    return None


def _require(output: str, label: str, rest: str) -> re.Match[str]:
    match = _optional(output, label, rest)
    if match is None:
        raise H2LoadParseError(f"no {label!r} line: not a complete h2load report")
    return match


def _distribution(
    output: str, label: str, cell: str, convert: Callable[[str], float]
) -> Distribution:
    """One table row: `label`, padding, a colon, four `cell` values and a percentage."""
    match = _require(output, label, r" *:" + rf"\s+({cell})" * 4 + rf"\s+({_FIXED})%")
    low, high, mean, sd = (convert(match[i]) for i in range(1, 5))
    return Distribution(low, high, mean, sd, within_sd=float(match[5]))


def _tls(output: str) -> TlsInfo | None:
    protocol = _optional(output, "TLS Protocol", r": (\S+)")
    if protocol is None:
        return None
    cipher = _require(output, "Cipher", r": (\S+)")
    key = _optional(output, "Server Temp Key", r": (.+)")
    return TlsInfo(protocol[1], cipher[1], key[1] if key else None)


def parse(output: str) -> H2LoadResult:
    """Parse h2load's stdout; raises H2LoadParseError naming the first missing line."""
    finished = _require(output, "finished in", rf" ({_DURATION}), ({_FIXED}) req/s, ({_SIZE})/s")
    requests = _require(
        output,
        "requests",
        rf": {_COUNT} total, {_COUNT} started, {_COUNT} done, {_COUNT} succeeded, "
        rf"{_COUNT} failed, {_COUNT} errored, {_COUNT} timeout",
    )
    statuses = _require(
        output, "status codes", rf": {_COUNT} 2xx, {_COUNT} 3xx, {_COUNT} 4xx, {_COUNT} 5xx"
    )
    traffic = _require(
        output,
        "traffic",
        rf": {_SIZE} \({_COUNT}\) total, {_SIZE} \({_COUNT}\) headers "
        rf"\(space savings ({_FIXED})%\), {_SIZE} \({_COUNT}\) data",
    )
    protocol = _optional(output, "Application protocol", r": (\S+)")
    return H2LoadResult(
        duration=parse_duration(finished[1]),
        requests_per_second=float(finished[2]),
        bytes_per_second=parse_size(finished[3]),
        requests=Requests(*map(int, requests.groups())),
        status_codes=StatusCodes(*map(int, statuses.groups())),
        traffic=Traffic(
            total=int(traffic[1]),
            headers=int(traffic[2]),
            data=int(traffic[4]),
            header_space_savings=float(traffic[3]),
        ),
        request_time=_distribution(output, "time for request", _DURATION, parse_duration),
        connect_time=_distribution(output, "time for connect", _DURATION, parse_duration),
        first_byte_time=_distribution(output, "time to 1st byte", _DURATION, parse_duration),
        client_requests_per_second=_distribution(output, "req/s", _FIXED, float),
        application_protocol=protocol[1] if protocol else None,
        tls=_tls(output),
        raw=output,
    )


class LoggedRequest(NamedTuple):
    """One row of h2load's `--log-file`, in whole microseconds as written."""

    start_us: int  # wall clock, since the epoch
    status: int  # FAILED_STREAM (-1): the stream was reset or failed; 0: status line not read
    duration_us: int  # from sending the request to the end of the response


@dataclass(frozen=True)
class Percentiles:
    """Request times over every response that completed, in seconds."""

    p50: float
    p90: float
    p99: float
    max: float


def parse_log(text: str) -> list[LoggedRequest]:
    """Rows of an h2load `--log-file`; a malformed row raises, naming its line number.

    h2load logs each request of the measured phase once (a timed-out or abandoned one not at all)
    and, with several threads, not in order.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LOG_ROW.fullmatch(line)
        if match is None:
            raise H2LoadParseError(f"line {number} of the request log is malformed: {line!r}")
        rows.append(LoggedRequest(int(match[1]), int(match[2]), int(match[3])))
    return rows


def read_log(path: Path) -> list[LoggedRequest]:
    return parse_log(path.read_text())


def latency_percentiles(rows: Sequence[LoggedRequest]) -> Percentiles | None:
    """p50, p90, p99 (interpolated between the nearest ranks) and max of the requests that got
    a response (any status), as h2load's own `time for request` counts them; None if none did."""
    seconds = sorted(row.duration_us / 1e6 for row in rows if row.status != FAILED_STREAM)
    if not seconds:
        return None
    if len(seconds) == 1:
        return Percentiles(seconds[0], seconds[0], seconds[0], seconds[0])
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return Percentiles(cuts[49], cuts[89], cuts[98], seconds[-1])


def as_dict(result: H2LoadResult) -> dict[str, Any]:
    """JSON-ready nested dict whose keys are the dataclass field names, for results.json."""
    return dataclasses.asdict(result)


def which() -> str | None:
    """Path of the h2load executable on PATH, or None."""
    return shutil.which("h2load")


def _check_installed() -> None:
    if which() is None:
        raise H2LoadMissingError(f"h2load not found on PATH: {INSTALL_HINT}")


def version() -> str:
    """h2load's version line (e.g. `h2load nghttp2/1.52.0`), to record next to its results."""
    _check_installed()
    done = subprocess.run(
        ["h2load", "--version"], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def _duration_arg(seconds: float) -> str:
    # h2load's -D takes an integer with an optional unit: "1.5" is rejected, "1500ms" is not.
    return str(int(seconds)) if float(seconds).is_integer() else f"{round(seconds * 1000)}ms"


def command(
    url: str,
    *,
    requests: int | None = None,
    duration: float | None = None,
    clients: int = 1,
    streams: int = 1,
    threads: int = 1,
    data_file: str | None = None,
    log_file: str | None = None,
    extra_args: Sequence[str] = (),
    prefix: Sequence[str] = (),
) -> list[str]:
    """The argv `run` executes, so callers can log or pin it (prefix=["taskset", "-c", "4-7"])."""
    if (requests is None) == (duration is None):
        raise ValueError("pass exactly one of requests= (-n) or duration= (-D)")
    argv = [*prefix, "h2load"]
    argv += ["-n", str(requests)] if duration is None else ["-D", _duration_arg(duration)]
    argv += ["-c", str(clients), "-m", str(streams), "-t", str(threads)]
    if data_file is not None:
        argv += ["-d", data_file]
    if log_file is not None:
        argv += ["--log-file", log_file]
    return [*argv, *extra_args, url]


def _tail(stream: str | bytes | None) -> str:
    text = stream.decode(errors="replace") if isinstance(stream, bytes) else stream or ""
    return text[-_TAIL_CHARS:].strip() or "(empty)"


def _failure(what: str, argv: Sequence[str], stdout: Any, stderr: Any) -> H2LoadError:
    return H2LoadError(
        f"{what}\ncommand: {shlex.join(argv)}\n"
        f"stderr tail:\n{_tail(stderr)}\nstdout tail:\n{_tail(stdout)}"
    )


def run(
    url: str,
    *,
    requests: int | None = None,
    duration: float | None = None,
    clients: int = 1,
    streams: int = 1,
    threads: int = 1,
    data_file: str | None = None,
    log_file: str | None = None,
    extra_args: Sequence[str] = (),
    prefix: Sequence[str] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> H2LoadResult:
    """Run h2load to completion and parse its report.

    Failed requests are data, not errors: h2load exits 0 even when no connection succeeded, so
    check `result.requests`. H2LoadError means there is no report (bad arguments, timeout, crash).
    `log_file` is emptied first: h2load appends to it, and it should hold this run's rows only.
    """
    _check_installed()
    if log_file is not None:
        Path(log_file).write_bytes(b"")
    argv = command(
        url,
        requests=requests,
        duration=duration,
        clients=clients,
        streams=streams,
        threads=threads,
        data_file=data_file,
        log_file=log_file,
        extra_args=extra_args,
        prefix=prefix,
    )
    try:
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        killed = f"h2load ran past {timeout}s and was killed"
        raise _failure(killed, argv, exc.stdout, exc.stderr) from exc
    if done.returncode != 0:
        raise _failure(f"h2load exited with {done.returncode}", argv, done.stdout, done.stderr)
    try:
        return parse(done.stdout)
    except H2LoadParseError as exc:
        raise _failure(str(exc), argv, done.stdout, done.stderr) from exc
