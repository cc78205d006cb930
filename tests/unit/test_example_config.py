"""osmium.example.toml names every setting, each at its default: a new setting that is not added
there fails here, and so does a default that changes on one side only."""

from __future__ import annotations

import dataclasses
import re

from osmium.config import Config, build_config, load_file
from osmium.protocol.limits import Limits
from osmium.protocol.settings import ProtocolSettings
from tests.integration.support import REPO_ROOT

EXAMPLE = REPO_ROOT / "osmium.example.toml"
#: Settings that are not Config fields: the flag-only spelling of another one.
ALIASES = {"fd"}  # --fd N is bind = ["fd://N"]


def setting_names() -> set[str]:
    nested = {"protocol", "limits"}
    owners = (Config, ProtocolSettings, Limits)
    return {f.name for owner in owners for f in dataclasses.fields(owner)} - nested


def test_the_example_loads_as_the_defaults() -> None:
    assert build_config(load_file(str(EXAMPLE))) == Config().validate()


def test_the_example_names_every_setting() -> None:
    text = EXAMPLE.read_text()
    named = set(re.findall(r"^#? ?([a-z_]+) = ", text, re.MULTILINE))
    assert setting_names() - named == set()
    assert named - setting_names() - ALIASES == set()
