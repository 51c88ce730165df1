"""Hostile request input: control characters in parameters get a clear 400, never a 500."""

from __future__ import annotations

import pytest

PAGES = [
    "/symbols/search/?q=%00",
    "/symbols/search/?q=BTC%01",
    "/?min_usd=%00",
    "/?side=all%7f",
    "/history/?symbol=%00",
    "/history/csv?symbol=BTC%0A",
    "/BTCUSDT/?%00=1",
]
API = [
    "/api/v1/liquidation-orders?symbol=%00",
    "/api/v1/liquidations?cursor=%00abc",
    "/api/v1/liquidation-volume/BTCUSDT/1m?start_time=1%1b",
]


def _check_pages(client) -> None:
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 400, url
        assert "control character" in response.content.decode(), url
    for url in API:
        response = client.get(url)
        assert response.status_code == 400, url
        assert "control character" in response.json()["detail"], url


@pytest.mark.django_db
def test_control_characters_in_parameters_are_a_400(client):
    _check_pages(client)


@pytest.mark.production
@pytest.mark.django_db
def test_pg_control_characters_in_parameters_are_a_400_not_a_database_error(client):
    _check_pages(client)


@pytest.mark.django_db
def test_ordinary_parameters_still_pass(client):
    assert client.get("/symbols/search/?q=BTC").status_code == 200
    assert client.get("/?min_usd=1000&side=long").status_code == 200


@pytest.mark.django_db
def test_the_400_page_escapes_what_it_echoes(client):
    response = client.get("/?%3Cscript%3E%00=1")
    assert response.status_code == 400
    assert b"<script>" not in response.content
    assert b"&lt;script&gt;" in response.content
