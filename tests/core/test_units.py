from datetime import datetime, timedelta

import pytest

from app.core.clientip import client_address
from app.core.timeparse import parse_duration, parse_since


def test_forwarded_for_only_from_trusted_proxies():
    assert client_address("10.0.0.5", "1.2.3.4", []) == "10.0.0.5"
    assert client_address("10.0.0.5", "1.2.3.4", ["10.0.0.0/8"]) == "1.2.3.4"
    assert client_address("192.0.2.9", "1.2.3.4", ["10.0.0.0/8"]) == "192.0.2.9"
    # A client cannot hide behind a forged left-most entry.
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.7", ["10.0.0.0/8"]) == "1.2.3.4"


def test_durations_and_since():
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("0.5s") == timedelta(milliseconds=500)
    now = datetime(2026, 3, 21, 12, 0, 0)
    assert parse_since("1h", now) == datetime(2026, 3, 21, 11, 0, 0)
    assert parse_since("2026-03-21T10:15:30Z", now) == datetime(2026, 3, 21, 10, 15, 30)
    assert parse_since("2026-03-21T19:15:30+09:00", now) == datetime(2026, 3, 21, 10, 15, 30)
    with pytest.raises(ValueError):
        parse_since("yesterday", now)
