"""/health: database, channel layer and worker state; 503 when any of them is down."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from liquidations.ingest.status import IngestStatus, VenueStatus
from liquidations.models import WorkerState
from liquidations.services.worker_state import worker_state_save


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _save(state: str, **fields) -> None:
    worker_state_save(status=IngestStatus.of(VenueStatus(venue="binance", state=state, **fields)))


def check_streaming_worker_is_healthy(client) -> None:
    now = timezone.now()
    _save(
        "streaming",
        connected_since=now - timedelta(minutes=3),
        last_event_at=now - timedelta(seconds=2),
        events_stored=1234,
        malformed_dropped=5,
    )
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"], body["channel_layer"]) == ("ok", "ok", "ok")
    worker = body["worker"]
    assert worker["state"] == "streaming"
    assert worker["connected_since"] == (now - timedelta(minutes=3)).isoformat()
    assert 2 <= worker["last_event_age_s"] < 60
    assert (worker["events_stored"], worker["malformed_dropped"]) == (1234, 5)
    assert worker["disconnected_for_s"] is None
    assert worker["venues"] == {"binance": "streaming"}


@pytest.mark.django_db
def test_streaming_worker_is_healthy(client):
    check_streaming_worker_is_healthy(client)


@pytest.mark.production
@pytest.mark.django_db
def test_pg_redis_streaming_worker_is_healthy(client):
    check_streaming_worker_is_healthy(client)


@pytest.mark.django_db
def test_no_worker_ever_is_503(client):
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"] == "ok"
    assert body["worker"]["state"] == "absent"


@pytest.mark.django_db
def test_disconnected_worker_is_healthy_for_five_minutes_then_503(client):
    _save("streaming")
    _save("reconnecting")
    first_down = WorkerState.objects.get().disconnected_since
    assert first_down is not None
    _save("reconnecting")  # later heartbeats keep the first moment it went down
    assert WorkerState.objects.get().disconnected_since == first_down
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["worker"]["state"] == "reconnecting"
    assert response.json()["worker"]["disconnected_for_s"] < 60

    WorkerState.objects.update(disconnected_since=timezone.now() - timedelta(minutes=4))
    assert client.get("/health").status_code == 200
    WorkerState.objects.update(disconnected_since=timezone.now() - timedelta(minutes=6))
    response = client.get("/health")
    assert response.status_code == 503
    assert 355 < response.json()["worker"]["disconnected_for_s"] < 420

    _save("streaming")  # reconnected
    assert WorkerState.objects.get().disconnected_since is None
    assert client.get("/health").status_code == 200


@pytest.mark.django_db
def test_dead_worker_counts_as_down_since_its_last_heartbeat(client):
    _save("streaming")
    WorkerState.objects.update(heartbeat_at=timezone.now() - timedelta(minutes=4))
    response = client.get("/health")
    # Gone for 4 minutes: not yet unhealthy, but no longer reported as streaming.
    assert response.status_code == 200
    assert response.json()["worker"]["state"] == "absent"
    WorkerState.objects.update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["worker"]["disconnected_for_s"] >= 600


@pytest.mark.django_db
def test_restarted_worker_counts_the_outage_from_the_crash(client):
    _save("streaming")
    crashed_at = timezone.now() - timedelta(minutes=7)
    WorkerState.objects.update(heartbeat_at=crashed_at)
    _save("connecting")  # the new process's first heartbeat
    assert WorkerState.objects.get().disconnected_since == crashed_at
    assert client.get("/health").status_code == 503


@pytest.mark.django_db
def test_channel_layer_down_is_503(client, settings):
    _save("streaming")
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{_closed_port()}/0"]},
        }
    }
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["channel_layer"].startswith("unavailable: ")
    assert body["database"] == "ok"


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_pg_database_down_is_503(client):
    # The pool keeps its connection settings: a new one is made for the closed port.
    saved_port = connection.settings_dict["PORT"]
    saved_pool = connection.settings_dict["OPTIONS"]["pool"]
    connection.close()
    connection.close_pool()
    connection.settings_dict["PORT"] = _closed_port()
    connection.settings_dict["OPTIONS"]["pool"] = {**saved_pool, "timeout": 0.5}
    try:
        response = client.get("/health")
    finally:
        connection.close()
        connection.close_pool()
        connection.settings_dict["PORT"] = saved_port
        connection.settings_dict["OPTIONS"]["pool"] = saved_pool
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "unavailable: OperationalError"
    assert body["worker"] is None
    assert body["channel_layer"] == "ok"
