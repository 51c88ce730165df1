"""The libraries whose internals our speed parts read are the versions they were checked on.

live/wire.py reads daphne's, autobahn's and Twisted's socket state; live/layers.py
overrides channels' in-memory layer and channels-redis's pub/sub layer (redis-py under
it); live/templating.py walks Django's compiled template nodes. Each falls back safely or
is covered by its own tests (test_wire.py, test_fanout_hub.py's real-daphne test,
test_production_layer.py, test_templating.py). This test makes an upgrade loud: bump the
pin in requirements.txt only after those tests pass on the new version.
"""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from tests.conftest import REPO

CHECKED = ("Django", "channels", "channels-redis", "daphne", "autobahn", "Twisted", "redis")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(
            r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s#]+)\s*(?:#.*)?", line.strip()
        )
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


@pytest.mark.parametrize("name", CHECKED)
def test_installed_version_is_the_pinned_one(name):
    pins = _pins()
    key = name.lower()
    assert key in pins, f"{name} must be pinned in requirements.txt (our speed parts read it)"
    assert version(name) == pins[key], (
        f"{name} {version(name)} is installed, {pins[key]} is pinned and was checked: "
        "run tests/test_wire.py, test_fanout_hub.py, test_production_layer.py and "
        "test_templating.py on the new version before changing the pin"
    )
