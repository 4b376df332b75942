"""Channel throughput: messages per second from one Telegram chat and from 100 chats, and update→reply delay.

Starts a fake Telegram Bot API server (tests/channels/fakes) and gunicorn (2 workers) with a
``telegram`` channel pointed at it, then:

- one chat: N updates at once in one chat (answered in order, one at a time);
- 100 chats: N updates spread over 100 chats at once;

each end to end through the ``echo`` provider, timed from the first update until the last reply
reached the fake platform, with the p50 / p99 delay from each update to its reply (mostly time
queued behind the others), and then updates over 100 chats paced below capacity (``--rate``),
whose delays are those of one message. The baseline,
measured in the same run on the same server, is the same turns sent straight to the sessions API
(one session sequentially; 100 sessions from 16 client threads), so the ratios show what the
channel path (long polling, the durable job, ``sendMessage``) costs over the API itself.

Run by hand from the repository root:

    .venv/bin/python bench/bench_channels.py
    LOCKGATE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/bench_channels.py --backend postgresql
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.channels.fakes.telegram import FakeTelegram  # noqa: E402
from tests.support.databases import database_url  # noqa: E402
from tests.support.server import GunicornServer  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

CONFIG = {
    "rate_limits": {"enabled": False},
    "logs": {"level": "warn"},  # debug would store an access-log row per request
    "agent": {"idle_after_secs": 86_400, "session_timeout_secs": 86_400, "max_turns": 100_000},
}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(label: str, count: int, seconds: float, delays: list[float] | None = None) -> float:
    rate = count / seconds
    extra = ""
    if delays:
        p50, p99 = statistics.median(delays) * 1000, percentile(delays, 0.99) * 1000
        extra = f"   update→reply p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"
    print(f"  {label:<44} {rate:8.1f} msg/s{extra}")
    return rate


def through_telegram(fake: FakeTelegram, count: int, chats: int, label: str, rate: float | None = None) -> float:
    """Send ``count`` updates over ``chats`` chats, at once or ``rate`` per second; messages per second
    until the last reply."""
    base = 10_000 + len(fake.sent) * 10  # fresh chat ids every run
    sent_at: dict[str, float] = {}
    already = len(fake.sent)
    began = time.monotonic()
    for n in range(count):
        if rate:
            time.sleep(max(0.0, began + n / rate - time.monotonic()))
        text = f"bench {base} {n}"
        sent_at[f"echo: {text}"] = time.monotonic()
        fake.message(chat_id=base + n % chats, user_id=1, text=text)
    wait_until(lambda: len(fake.sent) - already >= count, timeout=600, interval=0.01,
               message=f"{count} replies ({label})")
    seconds = time.monotonic() - began
    with fake.lock:
        replies = fake.sent[already:]
    delays = [reply["at"] - sent_at[reply["text"]] for reply in replies if reply["text"] in sent_at]
    assert len(delays) == count, f"{len(delays)} of {count} replies matched their updates"
    return report(label, count, seconds, delays)


def through_api(server: GunicornServer, count: int, sessions: int, threads: int, label: str) -> float:
    headers = server.headers("write")
    ids = [requests.post(f"{server.url}/api/v1/sessions", json={"user_id": "bench"}, headers=headers,
                         timeout=30).json()["id"] for _ in range(sessions)]
    jobs = [(ids[n % sessions], f"bench {n}") for n in range(count)]
    lock = threading.Lock()
    failures = []

    def worker(index: int):
        http = requests.Session()
        # Each thread owns whole sessions, so a session's messages never wait on each other's locks.
        mine = [job for n, job in enumerate(jobs) if ids.index(job[0]) % threads == index]
        for session, text in mine:
            answer = http.post(f"{server.url}/api/v1/sessions/{session}/messages", json={"content": text},
                               headers=headers, timeout=60)
            if answer.status_code != 200:
                with lock:
                    failures.append(answer.text[:200])
        http.close()

    began = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(min(threads, sessions))]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} API messages failed, e.g. {failures[0]}")
    return report(label, count, time.monotonic() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--messages", type=int, default=300, help="messages per figure")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=5.0, help="updates per second of the paced figure")
    args = parser.parse_args()

    fake = FakeTelegram().start()
    channel = {"telegram": {"bot_token": fake.token, "api_url": fake.url, "allowed_users": ["*"],
                            "poll_timeout_secs": 10}}
    print(f"backend {args.backend}, {args.workers} gunicorn workers, {args.messages} messages per figure")
    with tempfile.TemporaryDirectory(prefix="bench-channels-") as tmp, database_url(args.backend, Path(tmp)) as url:
        server = GunicornServer(Path(tmp) / "server", url, {**CONFIG, "channels_config": channel},
                                workers=args.workers).start(settle=2.0)
        try:
            wait_until(lambda: fake.webhook_deleted and fake.calls_to("/getUpdates"), timeout=30,
                       message="the channel polling")
            through_telegram(fake, 20, 20, "warm-up")
            api_one = through_api(server, args.messages, 1, 1, "API, one session (baseline)")
            one = through_telegram(fake, args.messages, 1, "Telegram, one chat")
            api_many = through_api(server, args.messages, 100, 16, "API, 100 sessions (baseline)")
            many = through_telegram(fake, args.messages, 100, "Telegram, 100 chats")
            through_telegram(fake, args.messages // 3, 100, f"Telegram, 100 chats, paced at {args.rate:g}/s",
                             rate=args.rate)
            print(f"  ratio one chat / one API session:   {one / api_one:.2f}")
            print(f"  ratio 100 chats / 100 API sessions: {many / api_many:.2f}")
        finally:
            server.stop()
            fake.stop()


if __name__ == "__main__":
    main()
