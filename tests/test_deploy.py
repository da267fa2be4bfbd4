"""What can be checked of the production setup without a Docker engine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_web_worker_beat_postgres16_and_redis7() -> None:
    services = _compose()["services"]
    assert set(services) == {"migrate", "web", "worker", "beat", "postgres", "redis"}
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    # migrations as the owner, then the application's role gets its grants
    migrate = services["migrate"]
    assert migrate["command"].index("manage.py migrate") < migrate["command"].index(
        "manage.py db_app_role cdp_app --create --password-env CDP_APP_DB_PASSWORD"
    )
    assert migrate["environment"]["DATABASE_URL"].startswith("postgres://cdp:")
    assert migrate["restart"] == "no"
    assert services["web"]["command"].startswith("gunicorn cdp.wsgi")
    assert services["web"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["worker"]["command"].startswith("celery -A cdp worker")
    assert services["beat"]["command"].startswith("celery -A cdp beat")
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DJANGO_SETTINGS_MODULE"] == "cdp.settings.production"
        # the application's role, which owns no table
        assert env["DATABASE_URL"].startswith("postgres://cdp_app:${CDP_APP_DB_PASSWORD:?")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        # the secret comes from the environment, never a default in the file
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
        assert env["CDP_PRIVACY_HASH_KEY"].startswith("${CDP_PRIVACY_HASH_KEY:?")
    assert services["worker"]["depends_on"]["web"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_every_setting_named_in_deploy_files_is_read_by_the_settings() -> None:
    settings_text = "".join(p.read_text() for p in (ROOT / "cdp").rglob("*.py"))
    names = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    for service in ("web", "worker"):
        names |= set(_compose()["services"][service]["environment"])
    # read by docker compose, or by `manage.py db_app_role --password-env`
    names -= {"DJANGO_SETTINGS_MODULE", "WEB_CONCURRENCY", "POSTGRES_PASSWORD", "WEB_PORT"}
    names -= {"CDP_APP_DB_PASSWORD"}
    missing = {n for n in names if f'"{n}"' not in settings_text}
    assert missing == set()


def test_dockerfile_installs_production_requirements_with_gunicorn() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements/production.txt" in dockerfile
    assert re.search(r"^gunicorn==", (ROOT / "requirements/production.txt").read_text(), re.M)
    assert re.search(r"^django==5\.2\.", (ROOT / "requirements/base.txt").read_text(), re.M)


def _dockerfile_build_env() -> dict[str, str]:
    """The variables the Dockerfile's collectstatic step sets (and its ENV lines)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    step = re.search(
        r"^RUN ((?:[A-Z_]+=\S+ )+)\\\n\s+python manage.py collectstatic", dockerfile, re.M
    )
    assert step, "the Dockerfile runs collectstatic with its settings in the RUN line"
    env = dict(pair.split("=", 1) for pair in step.group(1).split())
    env["DJANGO_SETTINGS_MODULE"] = re.search(r"DJANGO_SETTINGS_MODULE=(\S+)", dockerfile).group(1)  # type: ignore[union-attr]
    return env


def test_production_settings_start_and_collect_static(tmp_path: Path) -> None:
    # the same step the Dockerfile runs at build time, with exactly its variables
    env = _dockerfile_build_env()
    assert env["DJANGO_SETTINGS_MODULE"] == "cdp.settings.production"
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            **env,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'build.sqlite3'}",
            "STATIC_ROOT": str(tmp_path / "static"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "admin").is_dir()
    assert list((tmp_path / "static").rglob("swagger-ui-bundle*.js"))


def test_production_settings_refuse_to_start_without_a_secret_key() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "cdp.settings.production"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_settings_refuse_to_start_without_a_privacy_hash_key() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "cdp.settings.production",
            "SECRET_KEY": "a-real-secret",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "CDP_PRIVACY_HASH_KEY" in result.stderr
