"""The clustering API: configs (create, list, detail, change, delete), starting
and listing runs, a run with its clusters; 400s name the bad fields, 409s are
the shared error body, and every route needs a token and a permission."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apps.api_auth.services import api_token_create
from apps.clustering.models import ClusteringConfig, ClusteringRun, RunStatus
from apps.segments.models import Segment

from .archetypes import FEATURES, archetype_population

pytestmark = pytest.mark.django_db

BASE = "/api/v1/clustering"


def _client(*codenames: str) -> Client:
    user, _ = get_user_model().objects.get_or_create(username=f"api-{'-'.join(codenames)[:100]}")
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="clustering", codename__in=codenames)
    )
    _, token = api_token_create(name="clustering-tests", user=user)
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def marketer(db: None) -> Client:
    return _client(
        *(
            f"{action}_{model}"
            for action in ("view", "add", "change", "delete")
            for model in ("clusteringconfig", "clusteringrun", "cluster")
        )
    )


def _create(client: Client, **body: Any) -> Any:
    body.setdefault("key", "shoppers")
    body.setdefault("name", "Shoppers")
    body.setdefault("features", FEATURES)
    return client.post(f"{BASE}/configs", body, content_type="application/json")


def test_create_list_get_change_delete(marketer):
    # when a config is created
    response = _create(marketer, k_min=3, k_max=7, schedule="30 2 * * *")

    # then it is answered as saved, with its schedule kept as a beat entry
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["key"] == "shoppers"
    assert body["features"] == FEATURES
    assert (body["k_min"], body["k_max"], body["algorithm"]) == (3, 7, "kmeans")
    assert body["current_run"] is None
    task = PeriodicTask.objects.get(name="clustering: recluster shoppers")
    assert task.task == "apps.clustering.tasks.recluster"
    assert (task.crontab.minute, task.crontab.hour) == ("30", "2")
    assert task.args == f"[{ClusteringConfig.objects.get().pk}]"

    # and it is listed and read
    assert [c["key"] for c in marketer.get(f"{BASE}/configs").json()] == ["shoppers"]
    assert marketer.get(f"{BASE}/configs/shoppers").json() == body

    # when it is changed (disabled, another schedule)
    changed = marketer.patch(
        f"{BASE}/configs/shoppers",
        {"enabled": False, "schedule": "0 4 * * 1", "algorithm": "hdbscan"},
        content_type="application/json",
    )

    # then the beat entry follows
    assert changed.status_code == 200, changed.json()
    assert changed.json()["algorithm"] == "hdbscan"
    task.refresh_from_db()
    assert not task.enabled and task.crontab.hour == "4" and task.crontab.day_of_week == "1"

    # when it is deleted, then it and its beat entry are gone
    assert marketer.delete(f"{BASE}/configs/shoppers").status_code == 204
    assert not ClusteringConfig.objects.exists()
    assert not PeriodicTask.objects.filter(name__startswith="clustering:").exists()
    assert marketer.get(f"{BASE}/configs/shoppers").status_code == 404


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"features": [{"name": "favourite_colour"}]},
            {"features": {"0": {"name": ['"favourite_colour" is not a valid choice.']}}},
        ),
        (
            {"features": [{"name": "orders_count"}, {"name": "orders_count"}]},
            {
                "features": [
                    "features[1].name: orders_count is listed twice (first at features[0])."
                ]
            },
        ),
        ({"features": []}, {"features": ["This list may not be empty."]}),
        ({"k_min": 6, "k_max": 3}, {"k_max": ["must be at least k_min (6)."]}),
        ({"k_min": 1}, {"k_min": ["Ensure this value is greater than or equal to 2."]}),
        ({"k_min": "3"}, {"k_min": ["A valid integer is required."]}),
        (
            {"schedule": "every night"},
            {"schedule": ["must be five cron fields (minute hour day month weekday), or empty"]},
        ),
        ({"schedule": "0 25 * * *"}, {"schedule": ["not a valid cron line"]}),
        (
            {"population_segment": "nobody"},
            {"population_segment": ["No segment has the key 'nobody'."]},
        ),
        (
            {"algorithm": "gmm"},
            {"algorithm": ['"gmm" is not a valid choice.']},
        ),
        (
            {"max_cluster_share": 1.5},
            {"max_cluster_share": ["Ensure this value is less than or equal to 1.0."]},
        ),
        ({"key": "no spaces"}, {"key": ["Letters, digits, hyphens and underscores only."]}),
        ({"key": "trailing\n"}, {"key": ["Letters, digits, hyphens and underscores only."]}),
    ],
)
def test_bad_input_is_400_naming_each_bad_field(marketer, body, errors):
    # when a config with a bad field is created
    response = _create(marketer, **body)

    # then it is a 400 naming the field and what is wrong
    assert response.status_code == 400
    got = response.json()["errors"]
    for name, expected in errors.items():
        if name == "schedule" and expected[0] == "not a valid cron line":
            assert got[name][0].startswith("not a valid cron line (")
        else:
            assert got[name] == expected
    assert not ClusteringConfig.objects.exists()


def test_a_taken_key_is_a_409_as_the_shared_error_body(marketer):
    assert _create(marketer).status_code == 201
    response = _create(marketer)
    assert response.status_code == 409
    assert response.json() == {
        "detail": "A clustering config with the key 'shoppers' already exists."
    }


def test_a_patch_cannot_change_the_key(marketer):
    assert _create(marketer).status_code == 201
    response = marketer.patch(
        f"{BASE}/configs/shoppers", {"key": "other"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "key": ["The key of a config does not change (this one is 'shoppers')."]
    }


def test_start_a_run_list_runs_and_read_one(marketer, django_capture_on_commit_callbacks):
    # given the archetypes and a config
    archetype_population(60)
    assert _create(marketer, k_max=6, min_cluster_size=5).status_code == 201

    # when a run is started (tests run the worker's task in-process)
    with django_capture_on_commit_callbacks(execute=True):
        started = marketer.post(f"{BASE}/configs/shoppers/runs")

    # then it was accepted (queued, in this test's transaction), and has run
    assert started.status_code == 202, started.json()
    run_id = started.json()["id"]
    assert started.json()["status"] == "queued"
    assert ClusteringRun.objects.get(pk=run_id).status == RunStatus.SUCCEEDED

    # and it is listed, and read with its clusters and personas
    listed = marketer.get(f"{BASE}/configs/shoppers/runs").json()
    assert [r["id"] for r in listed] == [run_id]
    detail = marketer.get(f"{BASE}/runs/{run_id}").json()
    assert detail["chosen_k"] == 5
    assert [c["k"] for c in detail["candidates"]] == [2, 3, 4, 5, 6]
    assert set(detail["timings"]) >= {"extract", "fit", "choose", "assign", "write"}
    assert detail["stability_ari"] is None
    assert len(detail["clusters"]) == 5
    cluster = detail["clusters"][0]
    assert Segment.objects.get(key=cluster["segment"]).kind == "cluster"
    assert cluster["persona_name"] and cluster["previous"] is None
    assert {"cluster", "population", "z"} == set(next(iter(cluster["feature_means"].values())))
    assert marketer.get(f"{BASE}/configs/shoppers").json()["current_run"] == run_id

    # when it runs again, then the clusters say which they continue
    with django_capture_on_commit_callbacks(execute=True):
        again = marketer.post(f"{BASE}/configs/shoppers/runs").json()
    second = marketer.get(f"{BASE}/runs/{again['id']}").json()
    assert {c["previous"]["run"] for c in second["clusters"]} == {run_id}
    assert second["stability_ari"] == 1.0


def test_a_run_in_progress_is_a_409_for_start_and_delete(marketer):
    assert _create(marketer).status_code == 201
    config = ClusteringConfig.objects.get()
    running = ClusteringRun.objects.create(
        config=config, status=RunStatus.RUNNING, started_at=timezone.now()
    )
    detail = (
        f"Run {running.pk} of this config is running: two runs of one config never overlap. "
        "Wait for it to finish."
    )
    started = marketer.post(f"{BASE}/configs/shoppers/runs")
    assert started.status_code == 409 and started.json() == {"detail": detail}
    deleted = marketer.delete(f"{BASE}/configs/shoppers")
    assert deleted.status_code == 409 and deleted.json() == {"detail": detail}


def test_unknown_addresses_and_bad_limits(marketer):
    assert marketer.get(f"{BASE}/configs/nope").status_code == 404
    assert marketer.get(f"{BASE}/configs/nope/runs").status_code == 404
    assert marketer.post(f"{BASE}/configs/nope/runs").status_code == 404
    assert marketer.get(f"{BASE}/runs/999999999999999999").status_code == 404
    assert _create(marketer).status_code == 201
    bad = marketer.get(f"{BASE}/configs/shoppers/runs?limit=0")
    assert bad.status_code == 400
    assert bad.json()["errors"] == {"limit": "limit must be a whole number from 1 to 500, got '0'."}


def test_every_route_needs_a_token_and_a_permission(marketer):
    assert _create(marketer).status_code == 201
    anonymous = Client()
    assert anonymous.get(f"{BASE}/configs").status_code == 401
    viewer = _client("view_clusteringconfig", "view_clusteringrun")
    assert viewer.get(f"{BASE}/configs").status_code == 200
    assert viewer.get(f"{BASE}/configs/shoppers/runs").status_code == 200
    assert _create(viewer, key="other").status_code == 403
    assert viewer.post(f"{BASE}/configs/shoppers/runs").status_code == 403
    assert viewer.delete(f"{BASE}/configs/shoppers").status_code == 403
    nobody = _client("view_cluster")
    assert nobody.get(f"{BASE}/configs").status_code == 403
    assert nobody.get(f"{BASE}/runs/1").status_code == 403
