"""Clustering configs: validation, saving with their beat schedule kept in step,
starting a run, renaming a persona. The run itself is apps/clustering/run.py;
between-runs assignment is apps/clustering/assign.py."""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.segments.written import written_segment_describe

from .extract import CLUSTERABLE
from .models import (
    DENSITY_ALGORITHMS,
    Algorithm,
    Cluster,
    ClusteringConfig,
    ClusteringRun,
    KSelection,
    RunStatus,
    Scaling,
    Transform,
)

RECLUSTER_TASK = "apps.clustering.tasks.recluster"
MAX_FEATURES = 50
MAX_K = 50


class RunInProgress(Exception):
    def __init__(self, run: ClusteringRun) -> None:
        super().__init__(f"run {run.pk} of this config is {run.status}")
        self.run = run


def features_problems(value: Any) -> list[str]:
    """What is wrong with a config's ``features`` list, each naming its place."""
    if not isinstance(value, list) or not value:
        return ["features: a non-empty list of {name, transform} is required"]
    if len(value) > MAX_FEATURES:
        return [f"features: at most {MAX_FEATURES}"]
    problems = []
    seen = set()
    transforms = set(Transform.values)
    for i, item in enumerate(value):
        where = f"features[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object with name and transform")
            continue
        extra = sorted(set(item) - {"name", "transform"})
        if extra:
            problems.append(f"{where}: unknown keys {', '.join(map(str, extra))}")
        name = item.get("name")
        if not isinstance(name, str) or name not in CLUSTERABLE:
            problems.append(f"{where}.name: must be one of {', '.join(CLUSTERABLE)}")
        elif name in seen:
            problems.append(f"{where}.name: {name} is listed twice")
        else:
            seen.add(name)
        transform = item.get("transform", Transform.NONE)
        if transform not in transforms:
            problems.append(f"{where}.transform: must be one of {', '.join(transforms)}")
    return problems


def cron_problem(schedule: str) -> str | None:
    if not schedule.strip():
        return None
    fields = schedule.split()
    if len(fields) != 5:
        return "must be five cron fields (minute hour day month weekday), or empty"
    from celery.schedules import crontab

    try:
        minute, hour, day, month, weekday = fields
        crontab(
            minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday
        )
    except (ValueError, TypeError) as exc:
        return f"not a valid cron line ({exc})"
    return None


def config_problems(values: dict[str, Any]) -> dict[str, str]:
    """Problems of a config's values, by field (used by the model's clean() for
    admin and by the API's serializer)."""
    out: dict[str, str] = {}
    if "features" in values:
        problems = features_problems(values["features"])
        if problems:
            out["features"] = "; ".join(problems)
    k_min, k_max = values.get("k_min"), values.get("k_max")
    if isinstance(k_min, int) and k_min < 2:
        out["k_min"] = "must be at least 2"
    if isinstance(k_max, int) and k_max > MAX_K:
        out["k_max"] = f"must be at most {MAX_K}"
    if isinstance(k_min, int) and isinstance(k_max, int) and k_min > k_max and "k_min" not in out:
        out["k_max"] = f"must be at least k_min ({k_min})"
    share = values.get("max_cluster_share")
    if isinstance(share, int | float) and not 0 < share <= 1:
        out["max_cluster_share"] = "must be above 0 and at most 1"
    eps = values.get("eps")
    if isinstance(eps, int | float) and not eps > 0:
        out["eps"] = "must be above 0"
    for name, low in (
        ("silhouette_sample_size", 10),
        ("fit_sample_size", 10),
        ("min_samples", 1),
        ("time_limit_seconds", 10),
    ):
        value = values.get(name)
        if isinstance(value, int) and value < low:
            out[name] = f"must be at least {low}"
    pca = values.get("pca_components")
    if isinstance(pca, int) and pca < 1:
        out["pca_components"] = "must be at least 1, or empty for none"
    if "schedule" in values and isinstance(values["schedule"], str):
        problem = cron_problem(values["schedule"])
        if problem:
            out["schedule"] = problem
    for name, choices in (
        ("scaling", Scaling.values),
        ("algorithm", Algorithm.values),
        ("k_selection", KSelection.values),
    ):
        if name in values and values[name] not in choices:
            out[name] = f"must be one of {', '.join(choices)}"
    return out


def _schedule_sync(config: ClusteringConfig) -> None:
    """Keep the config's beat entry (django-celery-beat) in step with it."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    task = config.periodic_task
    if not config.schedule.strip():
        if task is not None:
            config.periodic_task = None
            ClusteringConfig.objects.filter(pk=config.pk).update(periodic_task=None)
            task.delete()
        return
    minute, hour, day, month, weekday = config.schedule.split()
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day,
        month_of_year=month,
        day_of_week=weekday,
        timezone="UTC",
    )
    values = {
        "name": f"clustering: recluster {config.key}"[:200],
        "task": RECLUSTER_TASK,
        "crontab": crontab,
        "interval": None,
        "args": json.dumps([config.pk]),
        "enabled": config.enabled,
        "description": f"Reclusters {config.name} ({config.key}); edit the config to change.",
    }
    if task is None:
        task = PeriodicTask.objects.create(**values)
        config.periodic_task = task
        ClusteringConfig.objects.filter(pk=config.pk).update(periodic_task=task)
    else:
        for name, value in values.items():
            setattr(task, name, value)
        task.save()


@transaction.atomic
def config_save(*, config: ClusteringConfig) -> ClusteringConfig:
    """Validate and save a config (new or changed) and its beat schedule."""
    config.features = [
        {"name": f["name"], "transform": f.get("transform", Transform.NONE)}
        for f in config.features
    ]
    config.full_clean()
    config.save()
    _schedule_sync(config)
    return config


@transaction.atomic
def config_delete(*, config: ClusteringConfig) -> None:
    """Delete a config: its runs go; its cluster segments stay, emptied and disabled
    (they may be mapped to content)."""
    from apps.segments.written import written_segments_swap

    active = config.runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).first()
    if active is not None:
        raise RunInProgress(active)
    run = config.current_run
    if run is not None:
        segments = [c.segment_id for c in run.clusters.all() if c.segment_id is not None]
        written_segments_swap(
            members=[], emptied=segments, emptied_text=f"config {config.key} was deleted"
        )
    task = config.periodic_task
    config.delete()
    if task is not None:
        task.delete()


def run_start(*, config: ClusteringConfig) -> ClusteringRun:
    """Queue a run now (API, admin). A run of this config already queued or
    running is a conflict: two runs of one config never overlap."""
    from .tasks import recluster as recluster_task

    with transaction.atomic():
        ClusteringConfig.objects.select_for_update().get(pk=config.pk)
        active = config.runs.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).first()
        if active is not None and not _stale(active):
            raise RunInProgress(active)
        if active is not None:  # its task or its worker was lost: say so, and go on
            ClusteringRun.objects.filter(pk=active.pk).update(
                status=RunStatus.FAILED,
                error="lost: its worker stopped, or its task never arrived",
                finished_at=timezone.now(),
            )
        run = ClusteringRun.objects.create(config=config, status=RunStatus.QUEUED)
        limit = config.time_limit_seconds
        transaction.on_commit(
            lambda: recluster_task.apply_async(
                args=[config.pk, run.pk], soft_time_limit=limit, time_limit=limit + 60
            )
        )
    return run


def _stale(run: ClusteringRun) -> bool:
    """A queued or running run older than its time limit (and a margin) was lost
    with its worker."""
    limit = run.config.time_limit_seconds + 300
    since = run.started_at or run.created_at
    return (timezone.now() - since).total_seconds() > limit


def cluster_rename(*, cluster: Cluster, name: str, description: str | None = None) -> Cluster:
    """A marketer's name for a persona: kept by later runs that match the cluster."""
    cluster.persona_name = name
    if description is not None:
        cluster.persona_description = description
    cluster.renamed = True
    cluster.full_clean()
    cluster.save(update_fields=["persona_name", "persona_description", "renamed"])
    if cluster.segment_id is not None:
        written_segment_describe(
            cluster.segment_id, name=name, description=cluster.persona_description
        )
    return cluster


__all__ = [
    "DENSITY_ALGORITHMS",
    "RunInProgress",
    "cluster_rename",
    "config_delete",
    "config_problems",
    "config_save",
    "run_start",
]
