#!/usr/bin/env python
"""Where a served decision's CPU goes, in process: ``POST /api/v1/decide`` through
Django's whole WSGI handler (every middleware, DRF, the view, the JSON renderer),
with production settings on bench/decide.py's database, one thread, no network.

Prints the CPU per request of the WSGI application, of the same request with the
middleware chain cut to what the view needs, and of the view alone (DRF's
``APIView`` dispatch), so the difference between the in-process figure and what
gunicorn serves can be told apart layer by layer; then cProfile's top entries
(``--profile``). Run bench/decide.py once first (it makes the data).

    flock /tmp/bench.lock .venv/bin/python bench/decide_profile.py --requests 3000
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import decide as bench  # bench/decide.py


def environ_for(body: bytes, token: str) -> dict[str, Any]:
    """A WSGI environ as gunicorn builds it for the benchmark's request."""
    return {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/api/v1/decide",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_CONNECTION": "keep-alive",
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", action="store_true", help="print cProfile's top entries")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--gc-threshold", type=int, default=0, help="gc.set_threshold(N) for generation 0"
    )
    args = parser.parse_args()

    bench.static_collect()
    bench.django_setup(bench.DATABASE)
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    from apps.personalization.models import Placement

    bench.consent_purpose_ensure()
    token = bench.token_create()
    placements = sorted(Placement.objects.values_list("key", flat=True))
    rng = random.Random(7)

    def body() -> bytes:
        n = rng.randint(1, 100_000)
        who = f"user_id:u{n}" if rng.random() >= 0.1 else f"user_id:x{n}"
        return json.dumps(
            {"profile": who, "placements": rng.sample(placements, 3), "context": {}}
        ).encode()

    app = get_wsgi_application()

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        if not status.startswith("200"):
            raise SystemExit(f"decide answered {status}")

    def serve(n: int) -> float:
        bodies = [body() for _ in range(n)]
        t0 = time.process_time()
        for b in bodies:
            result = app(environ_for(b, token), start_response)
            b"".join(result)
            result.close()  # request_finished: what gunicorn calls after each answer
        return (time.process_time() - t0) / n * 1000

    serve(300)  # warm: caches, connection, the SQL template
    gc.freeze()  # as cdp/gunicorn.py does after the worker loads
    if args.gc_threshold:
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])
    pauses: list[tuple[int, float]] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append((info["generation"], (time.perf_counter() - started.pop()) * 1000))

    gc.callbacks.append(on_gc)
    ms = sorted(serve(args.requests // 3) for _ in range(3))[1]
    gc.callbacks.remove(on_gc)
    print(f"[wsgi] {settings.SETTINGS_MODULE}: {ms:.3f} ms CPU per decide (median of 3)")
    for gen in (0, 1, 2):
        times = [t for g, t in pauses if g == gen]
        if times:
            print(
                f"[gc] generation {gen} (threshold {gc.get_threshold()}): {len(times)} "
                f"collections in {args.requests} requests, {sum(times):.1f} ms in all, "
                f"longest {max(times):.2f} ms"
            )
    if args.profile:
        prof = cProfile.Profile()
        bodies = [body() for _ in range(args.requests)]
        prof.enable()
        for b in bodies:
            result = app(environ_for(b, token), start_response)
            b"".join(result)
            result.close()
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())


if __name__ == "__main__":
    main()
