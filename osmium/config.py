"""Every server setting in one place: defaults, the TOML file, and validation.

The CLI and `osmium.toml` set the same names; a bad value is a `ConfigError` with one clear line.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from osmium.asgi import CONNECTION_SPECIFIC
from osmium.protocol.limits import Limits
from osmium.protocol.proxy_header import VERSIONS as PROXY_PROTOCOL_VERSIONS
from osmium.protocol.settings import ProtocolSettings
from osmium.protocol.ws import WebSocketSettings
from osmium.proxy import TrustedProxies, root_path_problem
from osmium.tls import TLS12_CIPHERS, VERIFY_CLIENT

DEMO_APP = "osmium.demo:app"
LOOPS = ("auto", "asyncio", "uvloop")
LOG_FORMATS = ("text", "json")
LIFESPAN_MODES = ("auto", "on", "off")
#: The default access line: `127.0.0.1:51234 - "GET /items?id=3 HTTP/2" 200 OK 12 0.41ms`.
ACCESS_LOG_FORMAT = (
    '{client} - "{method} {target} {protocol}" {status} {reason} {bytes} {duration_ms}ms'
)
#: --http: both protocols (ALPN, prior knowledge, h2c upgrade), HTTP/1.1 only, HTTP/2 only.
HTTP_MODES = ("auto", "1", "2")
PROXY_PROTOCOL = ("off", *PROXY_PROTOCOL_VERSIONS)
MAX_WORKERS = 1024
#: A day of per-second history at most (about 1.4 MiB an hour for one worker, 0.5 MiB more for
#: each other worker; README: Admin plane).
MAX_ADMIN_HISTORY = 24 * 3600


class ConfigError(Exception):
    """A setting that cannot be used; the message is shown to the user as is."""


@dataclass(frozen=True)
class Config:
    #: The ASGI application as "module:attribute".
    app: str = DEMO_APP
    #: `app` names a factory: call it with no arguments, serve what it returns.
    factory: bool = False
    #: Where to listen: "HOST:PORT", "[IPv6]:PORT", "unix:PATH", "fd://N" (a socket handed over,
    #: as systemd does); TLS when certfile is set. Several: several listeners, every worker
    #: serving all of them.
    bind: tuple[str, ...] = ("127.0.0.1:8000",)
    #: Listeners that stay cleartext when the others serve TLS (e.g. h2c beside TLS).
    insecure_bind: tuple[str, ...] = ()
    #: Permissions of a unix socket's file (octal).
    uds_mode: str = "0660"
    certfile: str | None = None
    keyfile: str | None = None
    tls_backend: str = "stdlib"
    #: Password of an encrypted private key.
    keyfile_password: str | None = None
    #: Certificates by SNI server name: host -> (certfile, keyfile); --certfile is the default.
    sni: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: OpenSSL cipher string for TLS 1.2; the default meets RFC 9113 §9.2.2.
    tls_ciphers: str = TLS12_CIPHERS
    #: CA certificates (PEM) client certificates must chain to.
    ca_certs: str | None = None
    #: Client certificates: none (not asked for), optional, required.
    verify_client: str = "none"
    #: Protocols served: "auto" (both), "1" (HTTP/1.1 only), "2" (HTTP/2 only).
    http: str = "auto"
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    limits: Limits = field(default_factory=Limits)
    #: Seconds a connection may stay open with no stream before it gets GOAWAY and is closed.
    keep_alive_timeout: float = 20.0
    #: Seconds in-flight streams get to finish after SIGTERM/SIGINT before connections are closed.
    graceful_timeout: float = 30.0
    backlog: int = 2048
    #: Worker processes, each with its own event loop and SO_REUSEPORT socket ("auto": CPU count).
    workers: int = 1
    #: Seconds a worker may go without a heartbeat (or take to start) before it is killed.
    worker_timeout: float = 30.0
    #: Recycle a worker after this many requests (0: never), plus up to max_requests_jitter more.
    max_requests: int = 0
    max_requests_jitter: int = 0
    #: Application handlers a worker runs at once (0: no cap); further streams wait their turn,
    #: round robin over connections and by urgency within one (README: Handler admission).
    max_active_handlers: int = 0
    #: HTTP/2 server pushes (ASGI http.response.push) one request may make (0: push off); the
    #: client's SETTINGS_ENABLE_PUSH and SETTINGS_MAX_CONCURRENT_STREAMS still apply.
    max_pushes_per_request: int = 8
    #: Largest request body in bytes (0: no limit); a larger one gets 413 and the app sees no
    #: more of it (README: Limits).
    max_request_body_size: int = 0
    #: Requests and WebSockets a worker has in flight at once (0: no limit); past it a new one
    #: gets 503 at once, never queued (README: Handler admission).
    limit_concurrency: int = 0
    #: `server: osmium` on every response whose app sent no `server` field.
    server_header: bool = True
    #: Fields added to every response that does not name them itself: (name, value) pairs,
    #: names lower case (CLI --header NAME:VALUE, TOML headers = ["NAME:VALUE", ...]).
    headers: tuple[tuple[str, str], ...] = ()
    #: Behind a reverse proxy: take client, scheme and server from Forwarded / X-Forwarded-*
    #: sent by a peer in forwarded_allow_ips (IPs and CIDRs, comma-separated, or "*"); mount
    #: the app at root_path (README: Behind a proxy).
    proxy_headers: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    root_path: str = ""
    #: Every listener expects a HAProxy PROXY protocol header ("v1" text, "v2" binary) ahead of
    #: each connection's bytes (TLS included) and serves it as from the header's client; "off":
    #: none (README: Behind a proxy).
    proxy_protocol: str = "off"
    #: The admin plane's listener, "HOST:PORT" or "unix:PATH" (None: no admin plane).
    admin_bind: str | None = None
    #: Bearer token of the admin API; without one a loopback listener gets a generated token
    #: (printed at start-up) and any other TCP address is refused.
    admin_token: str | None = None
    #: Seconds of per-second history the admin plane keeps.
    admin_history: int = 3600
    #: WebSockets: largest message (over it: Close 1009), Ping every ws_ping_interval seconds
    #: (0: never; no Pong within ws_ping_timeout: Close 1011), permessage-deflate offered.
    ws_max_message_size: int = 16 * 1024 * 1024
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    ws_per_message_deflate: bool = True
    #: One line per request on the osmium.access logger (README: Logs).
    access_log: bool = True
    #: The access line, as a str.format template of the fields README: Logs lists.
    access_log_format: str = ACCESS_LOG_FORMAT
    log_level: str = "info"
    #: "text": a line of text per record; "json": one JSON object per line (README: Logs).
    log_format: str = "text"
    #: A logging.config.dictConfig file (JSON, TOML or YAML) applied after osmium's own setup.
    log_config: str | None = None
    #: The ASGI lifespan protocol: "auto" (if the app speaks it), "on" (an app that does not
    #: is an error), "off" (never sent).
    lifespan: str = "auto"
    #: Development: restart the workers when a Python file under reload_dirs (default: the
    #: working directory) changes.
    reload: bool = False
    reload_dirs: tuple[str, ...] = ()
    #: KEY=VALUE lines added to the environment (variables already set win) before settings
    #: are read from it and before the app is imported.
    env_file: str | None = None
    #: Log every frame h2 sees and sends (debug level, logger "osmium.frames").
    debug_frames: bool = False
    loop: str = "auto"

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def websocket(self) -> WebSocketSettings:
        return WebSocketSettings(
            max_message_size=self.ws_max_message_size,
            ping_interval=self.ws_ping_interval,
            ping_timeout=self.ws_ping_timeout,
            per_message_deflate=self.ws_per_message_deflate,
        )

    @property
    def listen_addresses(self) -> list[ListenAddress]:
        """Every listener, in order: `bind` (TLS if configured), then `insecure_bind`."""
        addresses = [parse_listen(entry, self.tls) for entry in self.bind]
        addresses += [parse_listen(entry, False) for entry in self.insecure_bind]
        if not addresses:
            raise ConfigError("nothing to listen on: give --bind")
        return addresses

    @property
    def socket_mode(self) -> int:
        try:
            mode = int(self.uds_mode, 8)
        except ValueError:
            mode = -1
        if not 0 <= mode <= 0o777:
            raise ConfigError(f"uds_mode {self.uds_mode!r} is not an octal file mode like 0660")
        return mode

    def _client_certificate_problems(self) -> list[str]:
        if self.verify_client not in VERIFY_CLIENT:
            return [f"verify_client must be one of {', '.join(VERIFY_CLIENT)}"]
        if self.verify_client != "none" and self.ca_certs is None:
            return [f"--verify-client {self.verify_client} needs --ca-certs"]
        if self.ca_certs is not None and self.certfile is None:
            return ["--ca-certs needs --certfile and --keyfile (client certificates are TLS)"]
        return []

    def validate(self) -> Config:
        problems = [*self.protocol.problems(), *self.limits.problems()]
        try:
            self.listen_addresses  # noqa: B018 (parsed to check them)
            self.socket_mode  # noqa: B018
        except ConfigError as error:
            problems.append(str(error))
        if (self.certfile is None) != (self.keyfile is None):
            problems.append("--certfile and --keyfile must be given together")
        problems += self._client_certificate_problems()
        if self.http not in HTTP_MODES:
            problems.append(f"http must be one of {', '.join(HTTP_MODES)}, not {self.http!r}")
        if not 1 <= self.workers <= MAX_WORKERS:
            problems.append(f"workers must be between 1 and {MAX_WORKERS} (or auto)")
        if self.worker_timeout <= 0:
            problems.append("worker_timeout must be positive")
        if self.max_requests < 0 or self.max_requests_jitter < 0:
            problems.append("max_requests and max_requests_jitter must not be negative")
        if self.max_active_handlers < 0:
            problems.append("max_active_handlers must be 0 (no cap) or a positive number")
        if self.max_pushes_per_request < 0:
            problems.append("max_pushes_per_request must be 0 (push off) or a positive number")
        if self.max_request_body_size < 0 or self.limit_concurrency < 0:
            problems.append(
                "max_request_body_size and limit_concurrency must be 0 (no limit) or positive"
            )
        if self.keep_alive_timeout <= 0:
            problems.append("keep_alive_timeout must be positive")
        if self.graceful_timeout < 0:
            problems.append("graceful_timeout must not be negative")
        problems += self._admin_problems()
        problems += self._proxy_problems()
        if self.ws_max_message_size <= 0 or self.ws_ping_timeout <= 0:
            problems.append("ws_max_message_size and ws_ping_timeout must be positive")
        if self.ws_ping_interval < 0:
            problems.append("ws_ping_interval must be 0 (no pings) or positive")
        if self.loop not in LOOPS:
            problems.append(f"loop must be one of {', '.join(LOOPS)}")
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
            problems.append(f"unknown log level {self.log_level!r}")
        for name, choices in (("log_format", LOG_FORMATS), ("lifespan", LIFESPAN_MODES)):
            if getattr(self, name) not in choices:
                problems.append(f"{name} must be one of {', '.join(choices)}")
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def _proxy_problems(self) -> list[str]:
        """Checked even with --proxy-headers off, so a typo shows before the day it is on."""
        problems = []
        try:
            TrustedProxies(self.forwarded_allow_ips)
        except ValueError as error:
            problems.append(f"forwarded_allow_ips: {error}")
        if problem := root_path_problem(self.root_path):
            problems.append(problem)
        if self.proxy_protocol not in PROXY_PROTOCOL:
            choices = ", ".join(PROXY_PROTOCOL)
            problems.append(f"proxy_protocol must be one of {choices}, not {self.proxy_protocol!r}")
        return problems

    def _admin_problems(self) -> list[str]:
        if not 1 <= self.admin_history <= MAX_ADMIN_HISTORY:
            return [f"admin_history must be between 1 and {MAX_ADMIN_HISTORY} seconds"]
        if self.admin_bind is None:
            return []
        if self.admin_bind.startswith("unix:"):
            return [] if self.admin_bind[5:] else ["--admin-bind unix: needs a path"]
        try:
            host, _port = parse_bind(self.admin_bind)
        except ConfigError as error:
            return [f"--admin-bind: {error}"]
        if self.admin_token is None and not is_loopback(host):
            return [
                f"--admin-bind {self.admin_bind} is reachable from other hosts: "
                "give it an --admin-token (or bind it to 127.0.0.1 or a unix socket)"
            ]
        return []


def is_loopback(host: str) -> bool:
    """Only this machine can reach `host` (a name counts only as "localhost")."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


PROTOCOL_FIELDS = {f.name for f in dataclasses.fields(ProtocolSettings)}
LIMIT_FIELDS = {f.name for f in dataclasses.fields(Limits)}
SERVER_FIELDS = {f.name for f in dataclasses.fields(Config)} - {"protocol", "limits"}
_OPTIONAL_STRINGS = {
    "certfile",
    "keyfile",
    "keyfile_password",
    "ca_certs",
    "admin_bind",
    "admin_token",
    "log_config",
    "env_file",
}


def setting_type(name: str) -> type:
    """What a setting's value must be (a file's or the environment's, before any conversion)."""
    if name in _OPTIONAL_STRINGS:
        return str
    if name == "sni":
        return dict
    owner = (
        ProtocolSettings if name in PROTOCOL_FIELDS else Limits if name in LIMIT_FIELDS else Config
    )
    default = next(f.default for f in dataclasses.fields(owner) if f.name == name)
    return type(default)


def _check_type(name: str, value: Any) -> None:
    expected = setting_type(name)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if type(value) is not expected:
        raise ConfigError(f"setting {name} must be {expected.__name__}, not {type(value).__name__}")


def parse_bind(bind: str) -> tuple[str, int]:
    """'HOST:PORT', '[IPv6]:PORT' or ':PORT' (all IPv4 interfaces)."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"invalid bind address {bind!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


def parse_sni(entries: object) -> dict[str, tuple[str, str]]:
    """`HOST=CERT,KEY` strings (CLI) or a {host: [cert, key]} table (TOML)."""
    pairs: dict[str, object] = {}
    if isinstance(entries, dict):
        pairs = entries
    elif isinstance(entries, list):
        for entry in entries:
            host, separator, files = str(entry).partition("=")
            if not separator:
                raise ConfigError(f"--sni {entry!r}: expected HOST=CERTFILE,KEYFILE")
            pairs[host] = files.split(",")
    else:
        raise ConfigError("sni must be a table of host = [certfile, keyfile]")
    result = {}
    for host, files in pairs.items():
        if not (isinstance(files, list) and len(files) == 2 and all(files)):
            raise ConfigError(f"sni {host}: expected a certificate file and a key file")
        result[str(host).lower()] = (str(files[0]), str(files[1]))
    return result


#: RFC 9110 §5.6.2 token: what a field name is made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: RFC 9110 §5.5 field value, ASCII only (obs-text is not for new fields): visible characters,
#: with spaces and tabs inside.
_FIELD_VALUE = re.compile(r"([\x21-\x7e]([\t\x20-\x7e]*[\x21-\x7e])?)?")
#: What a default header may not set: connection-specific fields (RFC 9113 §8.2.2 forbids them
#: in HTTP/2; the HTTP/1.1 core sets its own), and what each response has its own of.
_NOT_DEFAULTS = {
    **dict.fromkeys(
        [name.decode() for name in CONNECTION_SPECIFIC] + ["te"],
        "is a connection-specific field, which HTTP/2 forbids (RFC 9113 §8.2.2)",
    ),
    "content-length": "is set by each response itself",
    "date": "is set by the server on every response",
}


def parse_headers(entries: object) -> tuple[tuple[str, str], ...]:
    """`NAME:VALUE` strings (--header, TOML `headers = [...]`) as (name, value) pairs: names
    lower case, the value without the whitespace around it."""
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise ConfigError('headers must be a list of "NAME:VALUE" strings')
    pairs = []
    for entry in entries:
        name, colon, value = entry.partition(":")
        value = value.strip(" \t")
        if not colon:
            raise ConfigError(f"header {entry!r}: expected NAME:VALUE")
        if not name:
            raise ConfigError(f"header {entry!r}: the name is empty")
        if not _TOKEN.fullmatch(name):
            raise ConfigError(f"header {entry!r}: {name!r} is not a field name (RFC 9110 token)")
        if not _FIELD_VALUE.fullmatch(value):
            raise ConfigError(
                f"header {entry!r}: the value may hold visible ASCII, spaces and tabs only"
            )
        name = name.lower()
        if name in _NOT_DEFAULTS:
            raise ConfigError(f"header {entry!r}: {name} {_NOT_DEFAULTS[name]}")
        pairs.append((name, value))
    return tuple(pairs)


@dataclass(frozen=True)
class ListenAddress:
    """One listener: a TCP address (`host`, `port`), a unix socket (`path`) or a socket handed
    over by descriptor (`fd`); TLS or not."""

    kind: str
    tls: bool
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1


def parse_listen(entry: str, tls: bool) -> ListenAddress:
    """ "HOST:PORT", "[IPv6]:PORT", ":PORT", "unix:PATH" or "fd://N"."""
    if entry.startswith("unix:"):
        if not entry[5:]:
            raise ConfigError(f"invalid bind address {entry!r}: expected unix:PATH")
        return ListenAddress("unix", tls, path=entry[5:])
    if entry.startswith("fd://"):
        if not entry[5:].isdigit():
            raise ConfigError(f"invalid bind address {entry!r}: expected fd://N")
        return ListenAddress("fd", tls, fd=int(entry[5:]))
    host, port = parse_bind(entry)
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range 0-65535")
    return ListenAddress("tcp", tls, host=host, port=port)


def _list_entries(name: str, value: object) -> tuple[Any, ...]:
    """A list setting as a tuple: one value (TOML string, an --fd number) or a list."""
    items = value if isinstance(value, list | tuple) else [value]
    kind = int if name == "fd" else str
    if not all(type(item) is kind for item in items):
        raise ConfigError(f"setting {name} must be {kind.__name__} or a list of them")
    return tuple(items)


def build_config(settings: dict[str, Any]) -> Config:
    """A validated Config from flat setting names (file and CLI use the same names)."""
    unknown = set(settings) - PROTOCOL_FIELDS - LIMIT_FIELDS - SERVER_FIELDS - {"fd"}
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    values = dict(settings)
    if "sni" in values:
        values["sni"] = parse_sni(values["sni"])
    if "headers" in values:
        values["headers"] = parse_headers(values["headers"])
    if values.get("workers") == "auto":
        values["workers"] = os.cpu_count() or 1
    for name in ("bind", "insecure_bind", "fd", "reload_dirs"):
        if name in values:
            values[name] = _list_entries(name, values[name])
    if "fd" in values:  # --fd N is --bind fd://N
        values["bind"] = values.get("bind", ()) + tuple(f"fd://{fd}" for fd in values.pop("fd"))
    for name, value in values.items():
        _check_type(name, value)
    protocol_values = {name: values.pop(name) for name in list(values) if name in PROTOCOL_FIELDS}
    limit_values = {name: values.pop(name) for name in list(values) if name in LIMIT_FIELDS}
    return Config(
        protocol=ProtocolSettings(**protocol_values), limits=Limits(**limit_values), **values
    ).validate()


def load_file(path: str) -> dict[str, Any]:
    """Settings from a TOML file: top-level keys, or a [server] table; names use underscores."""
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    table = document.get("server", document)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [server] must be a table")
    if table is not document and len(document) > 1:
        outside = ", ".join(sorted(key for key in document if key != "server"))
        raise ConfigError(f"config file {path}: settings outside [server]: {outside}")
    settings = {key.replace("-", "_"): value for key, value in table.items()}
    return relative_to(os.path.dirname(os.path.abspath(path)), settings)


#: Settings that name files or directories: a config file's relative ones are relative to it.
PATH_SETTINGS = frozenset({"certfile", "keyfile", "ca_certs", "log_config", "env_file"})
#: Listener settings, whose "unix:PATH" entries are paths too.
LISTENER_SETTINGS = frozenset({"bind", "insecure_bind", "admin_bind"})


def relative_to(base: str, settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with their relative paths made relative to `base`, not to the working
    directory (which a service manager picks, not the person who wrote the file)."""

    def path(value: Any) -> Any:
        return os.path.join(base, value) if isinstance(value, str) and value else value

    def listener(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("unix:"):
            return "unix:" + path(value[5:])
        return value

    def sni_entry(entry: Any) -> Any:
        host, separator, files = str(entry).partition("=")
        return f"{host}={','.join(map(path, files.split(',')))}" if separator else entry

    def each(value: Any, convert: Any) -> Any:
        return [convert(item) for item in value] if isinstance(value, list) else convert(value)

    resolved = dict(settings)
    for name, value in settings.items():
        if name in PATH_SETTINGS or name == "reload_dirs":
            resolved[name] = each(value, path)
        elif name in LISTENER_SETTINGS:
            resolved[name] = each(value, listener)
        elif name == "sni" and isinstance(value, dict):
            resolved[name] = {host: each(files, path) for host, files in value.items()}
        elif name == "sni" and isinstance(value, list):  # --sni HOST=CERT,KEY
            resolved[name] = [sni_entry(entry) for entry in value]
    return resolved
