"""What can be checked of the production setup without a Docker engine."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.gunicorn import GUNICORN, free_port, gunicorn_serving

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_web_worker_beat_postgres16_and_redis7() -> None:
    services = _compose()["services"]
    assert set(services) == {
        "migrate",
        "web",
        "worker",
        "worker-clustering",
        "beat",
        "postgres",
        "redis",
    }
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
    # events and the rest on the default queue; clustering's long chunk tasks on
    # their own worker, one at a time, so they never queue ahead of events
    assert "-Q celery" in services["worker"]["command"]
    chunks = services["worker-clustering"]["command"]
    assert chunks.startswith("celery -A cdp worker") and "-Q clustering" in chunks
    assert "--prefetch-multiplier=1" in chunks
    for name in ("web", "worker", "worker-clustering", "beat"):
        env = services[name]["environment"]
        assert env["DJANGO_SETTINGS_MODULE"] == "cdp.settings.production"
        # the application's role, which owns no table
        assert env["DATABASE_URL"].startswith("postgres://cdp_app:${CDP_APP_DB_PASSWORD:?")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        # the secret comes from the environment, never a default in the file
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
        assert env["CDP_PRIVACY_HASH_KEY"].startswith("${CDP_PRIVACY_HASH_KEY:?")
        assert env["CDP_SECRETS_KEY"].startswith("${CDP_SECRETS_KEY:?")
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
    """The variables the Dockerfile's collectstatic step sets (and its ENV lines),
    evaluated by a shell as the build does (its keys are random at each build)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    step = re.search(
        r"^RUN ((?:[A-Z_]+=(?:\"[^\"\n]*\"|\S+) \\\n\s*)+)python manage.py collectstatic",
        dockerfile,
        re.M,
    )
    assert step, "the Dockerfile runs collectstatic with its settings in the RUN line"
    assignments = step.group(1).replace("\\\n", " ")
    shell = subprocess.run(
        ["sh", "-c", f"{assignments} env -0"],
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        capture_output=True,
        check=True,
    )
    names = re.findall(r"([A-Z_]+)=", assignments)
    built = dict(pair.split("=", 1) for pair in shell.stdout.decode().split("\0") if "=" in pair)
    env = {name: built[name] for name in names}
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
            "SECRET_KEY": secrets.token_urlsafe(50),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "CDP_PRIVACY_HASH_KEY" in result.stderr


def test_production_settings_refuse_to_start_without_a_secrets_key() -> None:
    # given every other secret, but not the key of the secrets stored encrypted
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": "cdp.settings.production",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "CDP_PRIVACY_HASH_KEY": secrets.token_urlsafe(50),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "CDP_SECRETS_KEY must be a long random value" in result.stderr


# --- Production entry points never start on insecure values (issue 15, defect 4) ---


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "CDP_PRIVACY_HASH_KEY": secrets.token_urlsafe(50),
        "CDP_SECRETS_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.sqlite3'}",
        "STATIC_ROOT": str(tmp_path / "static"),
        **extra,
    }


def _run(args: list[str], env: dict[str, str], timeout: int = 120) -> Any:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_entry_point_defaults_to_production_settings() -> None:
    # given no DJANGO_SETTINGS_MODULE at all, as a bare `gunicorn cdp.wsgi` or
    # `celery -A cdp` would start
    code = (
        "import os, importlib, sys; importlib.import_module(sys.argv[1]); "
        "print(os.environ['DJANGO_SETTINGS_MODULE'])"
    )
    for module in ("cdp", "cdp.celery"):
        # when
        result = _run([sys.executable, "-c", code, module], {"PATH": "/usr/bin:/bin"})

        # then
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "cdp.settings.production"


def test_gunicorn_without_any_environment_refuses_to_start(tmp_path: Path) -> None:
    # when: the probe's command, with nothing set
    result = _run(
        [*GUNICORN, "--bind", "127.0.0.1:0"],
        {"PATH": "/usr/bin:/bin"},
    )

    # then: it stops at start, naming the secret (it once ran DEBUG=True on a
    # published fallback key)
    assert result.returncode != 0
    assert "Set the SECRET_KEY environment variable" in result.stderr


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"SECRET_KEY": "insecure-local-only-key-change-me"}, "SECRET_KEY must be a long random"),
        ({"SECRET_KEY": "short-but-real"}, "SECRET_KEY must be a long random"),
        ({"SECRET_KEY": "a" * 60}, "SECRET_KEY must be a long random"),
        ({"CDP_PRIVACY_HASH_KEY": "build-only"}, "CDP_PRIVACY_HASH_KEY must be a long random"),
        ({"CDP_SECRETS_KEY": "short"}, "CDP_SECRETS_KEY must be a long random"),
        # a rotation's list: every key is held to the bar, not only the first
        (
            {"CDP_SECRETS_KEY": secrets.token_urlsafe(50) + ",test-only-secret-key"},
            "CDP_SECRETS_KEY must be a long random",
        ),
        ({"DEBUG": "true"}, "DEBUG is on with production settings"),
    ],
)
def test_production_settings_refuse_insecure_values(
    tmp_path: Path, variables: dict[str, str], message: str
) -> None:
    # when
    env = _production_env(tmp_path, DJANGO_SETTINGS_MODULE="cdp.settings.production", **variables)
    result = _run([sys.executable, "manage.py", "check"], env)

    # then
    assert result.returncode != 0
    assert message in result.stderr


def _collectstatic(env: dict[str, str]) -> None:
    result = _run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], env)
    assert result.returncode == 0, result.stderr


def test_check_deploy_is_clean_on_production_defaults(tmp_path: Path) -> None:
    # given production settings with only the required secrets, static collected
    env = _production_env(tmp_path, DJANGO_SETTINGS_MODULE="cdp.settings.production")
    _collectstatic(env)

    # when
    result = _run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], env
    )

    # then
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (1 silenced)." in result.stdout


def test_check_deploy_reports_uncollected_static_files(tmp_path: Path) -> None:
    # when
    env = _production_env(tmp_path, DJANGO_SETTINGS_MODULE="cdp.settings.production")
    result = _run([sys.executable, "manage.py", "check", "--deploy"], env)

    # then
    assert result.returncode != 0
    assert "cdp.E001" in result.stderr
    assert "python manage.py collectstatic --noinput" in result.stderr


# --- Static files (defect 5) ----------------------------------------------------


def test_gunicorn_refuses_to_start_without_collected_static_files(tmp_path: Path) -> None:
    # given production settings and an empty STATIC_ROOT
    env = _production_env(tmp_path)

    # when
    result = _run(
        [*GUNICORN, "--bind", f"127.0.0.1:{free_port()}"],
        env,
    )

    # then: it says what to run instead of answering the admin login with a 500
    assert result.returncode != 0
    assert "Static files are not collected" in result.stderr
    assert "python manage.py collectstatic --noinput" in result.stderr


def test_admin_login_and_api_docs_are_served_by_gunicorn_after_collectstatic(
    tmp_path: Path,
) -> None:
    # given production settings (over plain HTTP on loopback), static collected
    env = _production_env(tmp_path, SECURE_SSL_REDIRECT="false")
    _collectstatic({**env, "DJANGO_SETTINGS_MODULE": "cdp.settings.production"})
    with gunicorn_serving(env) as base:
        # when
        login = requests.get(f"{base}/admin/login/", timeout=10)
        docs = requests.get(f"{base}/api/docs/", timeout=10)
        css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]+\.css)"', login.text)

        # then: pages and their hashed static files
        assert login.status_code == 200
        assert docs.status_code == 200
        assert css, "the login page names the hashed stylesheet"
        assert requests.get(f"{base}{css.group(1)}", timeout=10).status_code == 200


def _gunicorn_config(env: dict[str, str], cores: set[int] | None = None) -> dict[str, Any]:
    pin = f"import os; os.sched_setaffinity(0, {sorted(cores)!r}); " if cores else ""
    code = (
        pin + "import json, runpy; c = runpy.run_path('cdp/gunicorn.py'); "
        "print(json.dumps({k: c[k] for k in ('workers', 'threads', 'keepalive')}))"
    )
    clean = {
        k: v for k, v in os.environ.items() if k not in {"WEB_CONCURRENCY", "GUNICORN_KEEPALIVE"}
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux's CPU affinity")
def test_gunicorn_processes_follow_the_cores_this_process_may_use_not_the_hosts() -> None:
    # given a process allowed on one core only (as a container's cpuset does)
    # when gunicorn's config is read without WEB_CONCURRENCY
    config = _gunicorn_config({}, cores={min(os.sched_getaffinity(0))})
    # then one process, not one per host core
    assert config["workers"] == 1
    assert config["keepalive"] == 5


def test_gunicorn_processes_and_keepalive_come_from_the_environment() -> None:
    config = _gunicorn_config({"WEB_CONCURRENCY": "12", "GUNICORN_KEEPALIVE": "75"})
    assert config == {"workers": 12, "threads": 4, "keepalive": 75}
