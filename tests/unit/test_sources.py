"""Settings resolution without a process: environment values by type, paths relative to their
config file, and `osmium config`'s output read back as a config file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from osmium.config import ConfigError, build_config, load_file, relative_to
from osmium.sources import parse_env_value, render, resolve


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("proxy_headers", "ON", True),
        ("proxy_headers", "0", False),
        ("workers", "auto", "auto"),
        ("workers", "4", 4),
        ("keep_alive_timeout", "2", 2.0),
        ("uds_mode", "0600", "0600"),
        ("bind", "[::1]:8000", ["[::1]:8000"]),
        ("bind", '["a:1", "unix:/x"]', ["a:1", "unix:/x"]),
        ("fd", "3", [3]),
        ("fd", "[3, 4]", [3, 4]),
        ("sni", '{"a.example" = ["a.pem", "a.key"]}', {"a.example": ["a.pem", "a.key"]}),
        ("certfile", "/etc/osmium/cert.pem", "/etc/osmium/cert.pem"),
    ],
)
def test_environment_values_take_the_setting_type(name: str, text: str, value: object) -> None:
    assert parse_env_value(name, text, f"OSMIUM_{name.upper()}") == value


def test_paths_in_a_config_file_are_relative_to_it() -> None:
    settings = {
        "certfile": "tls/cert.pem",
        "keyfile": "/abs/key.pem",
        "bind": ["unix:run/osmium.sock", "127.0.0.1:8000"],
        "admin_bind": "unix:admin.sock",
        "sni": {"a.example": ["a.pem", "a.key"]},
        "reload_dirs": ["src"],
        "app": "pkg.module:app",
    }
    assert relative_to("/etc/osmium", settings) == {
        "certfile": "/etc/osmium/tls/cert.pem",
        "keyfile": "/abs/key.pem",
        "bind": ["unix:/etc/osmium/run/osmium.sock", "127.0.0.1:8000"],
        "admin_bind": "unix:/etc/osmium/admin.sock",
        "sni": {"a.example": ["/etc/osmium/a.pem", "/etc/osmium/a.key"]},
        "reload_dirs": ["/etc/osmium/src"],
        "app": "pkg.module:app",
    }


def test_what_osmium_config_prints_loads_back_as_the_same_config(tmp_path: Path) -> None:
    flags = {
        "workers": 3,
        "headers": ["x-team:core"],
        "bind": ["127.0.0.1:8001", "unix:/tmp/o.sock"],
        "proxy_protocol": "v2",
        "max_concurrent_streams": 64,
        "sni": ["a.example=a.pem,a.key"],
        "reload_dirs": ["/srv/app"],
    }
    environ = {"OSMIUM_IDLE_PING": "0"}
    resolved = resolve(flags, {}, environ)
    config = build_config(resolved.settings)
    printed = tmp_path / "printed.toml"
    printed.write_text(render(config, resolved.sources))
    tomllib.loads(printed.read_text())
    assert build_config(load_file(str(printed))) == config


def test_host_and_port_are_one_bind() -> None:
    assert resolve({"port": 9000}, {}, {}).settings["bind"] == ["127.0.0.1:9000"]
    with pytest.raises(ConfigError, match="give one of them"):
        resolve({"port": 9000, "bind": ["127.0.0.1:1"]}, {}, {})
