"""What hashing the write key costs a request: the write-key lookup on a cache hit
(the path nearly every ingestion request takes), against the plain-key lookup it
replaced, measured in the same run.

    flock /tmp/bench.lock .venv/bin/python bench/write_keys.py [--calls N] [--runs R]

No database is touched: both caches are primed with one source.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import timeit
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings.test")
os.environ.pop("DATABASE_URL", None)
os.environ.pop("CELERY_BROKER_URL", None)

import django

django.setup()

from django.conf import settings  # noqa: E402

from apps.common.utils import sha256_hex  # noqa: E402
from apps.events import auth  # noqa: E402
from apps.events.models import Source, generate_write_key, write_key_hash  # noqa: E402

_plain_cache: dict[str, tuple[float, Any]] = {}


def plain_lookup(write_key: str) -> Any:
    """The lookup before keys were hashed (main until this change), cache-hit path."""
    if "\x00" in write_key:
        return None
    ttl = settings.CDP["WRITE_KEY_CACHE_SECONDS"]
    now = time.monotonic()
    if ttl:
        hit = _plain_cache.get(write_key)
        if hit is not None and hit[0] > now:
            return hit[1]
    raise AssertionError("the bench only times cache hits")


def _per_call(call: Any, n: int) -> float:
    """Microseconds per call, the best of three runs of ``n``."""
    return min(timeit.repeat(call, number=n, repeat=3)) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings.CDP = {**settings.CDP, "WRITE_KEY_CACHE_SECONDS": 5}
    key = generate_write_key()
    source = Source(id=1, name="bench")
    far = time.monotonic() + 1e9
    _plain_cache[key] = (far, source)
    auth._cache[write_key_hash(key)] = (far, source)
    assert auth.source_for_key(key) is source and plain_lookup(key) is source
    n = args.calls
    print(f"load average before: {os.getloadavg()[0]:.2f}; {n:,} calls, best of 3")
    for run in range(1, args.runs + 1):
        plain = _per_call(lambda: plain_lookup(key), n)
        hashed = _per_call(lambda: auth.source_for_key(key), n)
        digest = _per_call(lambda: sha256_hex(key), n)
        print(
            f"run {run}: plain {plain:.2f} us, hashed {hashed:.2f} us, "
            f"SHA-256 alone {digest:.2f} us, difference {hashed - plain:+.2f} us"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
