"""Content-Security-Policy on every response, and DJANGO_HTTPS for a site behind TLS."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys

import pytest

from orderfox.settings import https_settings
from tests.conftest import REPO

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url", ["/", "/history/", "/api/v1/liquidation-orders", "/admin/login/", "/nowhere/"]
)
def test_every_response_carries_the_policy(client, url):
    policy = client.get(url)["Content-Security-Policy"]
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self' ws://testserver"
    assert "unsafe" not in policy


INLINE = re.compile(
    r"<script(?![^>]*\ssrc=)|<style|\sstyle=|\son[a-z]+=|hx-on|javascript:", re.IGNORECASE
)


def test_templates_hold_no_inline_script_or_style():
    """What the policy would refuse: inline scripts, styles, handlers (browser-tested too)."""
    found = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in (REPO / "templates").rglob("*.html")
        for match in INLINE.finditer(path.read_text())
    ]
    assert not found


def _check_deploy(**env: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=REPO,
        env={
            **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_check_deploy_is_clean_with_django_https(tmp_path):
    output = _check_deploy(DJANGO_HTTPS="1", ORDERFOX_DATA_DIR=str(tmp_path))
    assert "no issues" in output, output
    # Without the switch the same warnings as before: the switch is what turns them off.
    output = _check_deploy(DJANGO_HTTPS="", ORDERFOX_DATA_DIR=str(tmp_path))
    for warning in ("W004", "W008", "W012", "W016"):
        assert f"security.{warning}" in output


@pytest.fixture
def https(settings):
    for name, value in https_settings().items():
        setattr(settings, name, value)
    return settings


def test_with_https_plain_http_is_redirected_but_health_is_not(client, https):
    response = client.get("/history/?side=long")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/history/?side=long"
    assert client.get("/health").status_code in (200, 503)  # answered, not redirected


def test_with_https_a_proxied_request_gets_hsts_secure_cookies_and_a_wss_policy(client, https):
    response = client.get("/admin/login/", headers={"x-forwarded-proto": "https"})
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert response.cookies["csrftoken"]["secure"]
    assert "connect-src 'self' wss://testserver" in response["Content-Security-Policy"]
