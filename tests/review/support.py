"""Shared by the Tool Review tests: signing keys made once per run, and a job pool running the review's jobs."""

from __future__ import annotations

import shutil
import threading
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from tempfile import mkdtemp

from app.core import jobs
from app.review import signing, workflow

RELAXED = {"rate_limits": {"review_submit": "10000/s", "review_query": "10000/s", "review_download": "10000/s"},
           "review": {"poll_interval_secs": 0.02}}

CLEAN_TOOL = '''"""Adds two numbers."""


def add(a: int, b: int) -> int:
    """Return the sum of a and b."""
    return a + b
'''
SHELL_TOOL = '''import subprocess


def run(cmd):
    return subprocess.run(cmd, shell=True)
'''
EVAL_TOOL = '''def calculate(user_input):
    return eval(user_input)
'''


@cache
def _made_keys() -> Path:
    # RSA 3072 keys take a moment to make: made once per test run, copied for each test.
    directory = Path(mkdtemp(prefix="lockgate-review-keys-")) / "signing"
    signing.init(directory, "Lockgate Test")
    return directory


def copy_keys(target: Path) -> Path:
    shutil.copytree(_made_keys(), target)
    return target


def submission(source: str = CLEAN_TOOL, name: str = "adder", version: str = "1.0.0", **extra) -> dict:
    return {"tool_name": name, "tool_version": version, "source_code": source,
            "metadata": {"description": f"{name} tool", "author": "dev@example.com", "permissions": []}, **extra}


@contextmanager
def running_pool(app):
    """The review's jobs run by a pool of this process, as a served worker's would."""
    pool = jobs.Pool(app.extensions["lockgate"], list(workflow.KINDS))
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            pool.step()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield pool
    finally:
        stop.set()
        thread.join(10)
        pool.wait(30)
