"""Parsing Symbiont DSL programs, against ``json.loads`` of a JSON document of the same size.

JSON decoding is C code doing the least a parser can do, so the ratio says how
far the DSL parser (pure Python, LALR) is from that floor on this machine. The
program is the test agent files repeated to about ``--lines`` lines; the JSON
document is the parsed program's own stored form, cut to the same byte size.

    .venv/bin/python bench/bench_dsl.py [--lines 2000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.runtime.dsl import parse  # noqa: E402

AGENTS = ROOT / "tests" / "runtime" / "agents"


def program_text(lines: int) -> str:
    one = "".join(p.read_text() for p in sorted(AGENTS.iterdir()))
    return one * max(1, round(lines / one.count("\n")))


def json_document(program, size: int) -> str:
    items, text = [], "[]"
    for item in program.to_dict()["items"]:
        items.append(item)
        text = json.dumps(items)
        if len(text) >= size:
            break
    return text


def rate(fn, seconds: float) -> float:
    fn()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fn()
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--lines", type=int, default=2000)
    args.add_argument("--seconds", type=float, default=3.0)
    options = args.parse_args()

    source = program_text(options.lines)
    document = json_document(parse(source), len(source.encode()))
    dsl_rate = rate(lambda: parse(source), options.seconds)
    json_rate = rate(lambda: json.loads(document), options.seconds)
    print(f"program: {source.count(chr(10))} lines, {len(source.encode()):,} bytes; "
          f"JSON document: {len(document.encode()):,} bytes")
    print(f"parse:      {dsl_rate:10.1f} programs/s  ({1000 / dsl_rate:.1f} ms each)")
    print(f"json.loads: {json_rate:10.1f} documents/s ({1000 / json_rate:.2f} ms each)")
    print(f"ratio parse / json.loads: {dsl_rate / json_rate:.3f}")


if __name__ == "__main__":
    main()
