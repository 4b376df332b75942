import os
import threading
import uuid

import pytest

from app.core.api import rate_group
from app.core.ratelimit import MappedCounters, RateLimiter, RedisCounters
from app.core.settings import Settings
from tests.support.databases import REDIS_URL


def limiter(counters, tmp_path, limit="5/10s"):
    settings = Settings(tmp_path / "absent.toml", overrides={"rate_limits.default": limit})
    return RateLimiter(counters, settings)


def exercise(rl, identity, now):
    return [rl.hit("default", identity, now=now + i * 0.01) for i in range(8)]


def check_window(decisions):
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert {d.reset for d in decisions} == {decisions[0].reset}
    assert all(d.retry_after >= 1 for d in decisions)
    assert decisions[-1].headers()["Retry-After"] == str(decisions[-1].retry_after)


# The mapped table always; Redis too when the suite has one (CI always does).
COUNTER_STORES = ["sqlite"] + (["redis"] if REDIS_URL else [])


def make_counters(store, tmp_path):
    if store == "redis":
        return RedisCounters(REDIS_URL, prefix=f"lockgate-test:{uuid.uuid4().hex}:")
    return MappedCounters(tmp_path / "rl.counters")


@pytest.mark.parametrize("store", COUNTER_STORES)
def test_counters_fixed_window(tmp_path, store):
    rl = limiter(make_counters(store, tmp_path), tmp_path)
    now = 1_000_000.0
    check_window(exercise(rl, "token:a", now))
    # Another identity has its own budget; the next window starts afresh.
    assert rl.hit("default", "token:b", now=now).allowed
    assert rl.hit("default", "token:a", now=now + 10).remaining == 4


def test_mapped_counters_are_shared_between_threads(tmp_path):
    """Two tables on one file in one process (as threads of one worker may have) count into one budget."""
    path = tmp_path / "rl.counters"
    first, second = limiter(MappedCounters(path), tmp_path), limiter(MappedCounters(path), tmp_path)
    now = 2_000_000.0
    results = []

    def hit(rl):
        for _ in range(10):
            results.append(rl.hit("default", "token:x", now=now).allowed)

    threads = [threading.Thread(target=hit, args=(rl,)) for rl in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 5


def test_mapped_counters_are_exact_across_processes(tmp_path):
    """Four processes incrementing one key at once: every increment counted once."""
    path = tmp_path / "rl.counters"
    MappedCounters(path).incr("warm", 0, 10)  # the file exists before the processes race
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            counters = MappedCounters(path)
            code = 0
            try:
                for _ in range(500):
                    counters.incr("token:x", 3_000_000, 10)
            except BaseException:
                code = 1
            os._exit(code)
        children.append(pid)
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in children)
    assert MappedCounters(path).incr("token:x", 3_000_000, 10) == 2001


def test_a_slot_whose_window_ended_serves_another_key(tmp_path):
    counters = MappedCounters(tmp_path / "rl.counters", slots=4)
    for n in range(4):
        assert counters.incr(f"key:{n}", 100, 10) == 1
    # Every slot is live: a fifth key takes over the one ending first, and says so.
    assert counters.incr("key:new", 105, 10) == 1
    assert sum(counters.incr(f"key:{n}", 100, 10) == 2 for n in range(4)) == 3
    # Windows over: each key starts again from one, the table never grows.
    assert [counters.incr(f"other:{n}", 200, 10) for n in range(4)] == [1, 1, 1, 1]
    assert (tmp_path / "rl.counters").stat().st_size == 16 + 4 * 32


def test_a_table_laid_out_differently_starts_afresh(tmp_path):
    path = tmp_path / "rl.counters"
    assert MappedCounters(path, slots=8).incr("key", 100, 10) == 1
    assert MappedCounters(path, slots=8).incr("key", 100, 10) == 2
    assert MappedCounters(path, slots=16).incr("key", 100, 10) == 1
    path.write_bytes(b"not a counter table")
    assert MappedCounters(path, slots=16).incr("key", 100, 10) == 1


def test_the_counters_the_app_picks_count_exactly(app_factory, backend):
    """The mapped table by default, the PostgreSQL database when that is the backend."""
    app = app_factory({"rate_limits": {"default": "5/10s"}})
    rl = app.extensions["lockgate"].limiter
    expected = "DatabaseCounters" if backend == "postgresql" else "MappedCounters"
    assert type(rl.counters).__name__ == expected
    check_window(exercise(rl, f"token:{uuid.uuid4().hex}", 4_000_000.0))


def test_storage_failure_fails_open(tmp_path):
    class Broken:
        def incr(self, *args):
            raise OSError("disk gone")

    assert limiter(Broken(), tmp_path).hit("default", "x") is None


@pytest.mark.parametrize("path,method,group", [
    ("/api/v1/sessions", "GET", "sessions_read"),
    ("/api/v1/sessions/sess_1/messages", "POST", "sessions_write"),
    ("/api/v1/sessions", "DELETE", "sessions_write"),
    ("/api/v1/config", "PATCH", "config_write"),
    ("/api/v1/config", "GET", "default"),
    ("/api/v1/sessionsx", "GET", "default"),
    ("/api/v1/status/health", "GET", "probes"),
])
def test_groups(app, path, method, group):
    # Resolved as a request is: by the route it matches, else by the blueprint whose prefix it is under.
    with app.test_request_context(path, method=method):
        from flask import request

        assert rate_group(app, request.endpoint, request.path, request.method) == group


