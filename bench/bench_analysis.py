"""Analysis time of a generated 5,000-line Python tool and a 5,000-line JavaScript tool.

    .venv/bin/python bench/bench_analysis.py [--lines 5000] [--rounds 3]

Each file is a realistic mix: helper functions, data handling, and a few
risky calls per hundred lines (subprocess, eval, requests to computed URLs,
file writes, environment reads), so every rule has work to do. The baseline
is parsing the same file alone, measured in the same run: ``ast.parse`` for
Python, the tree-sitter parse for JavaScript. Printed: the median of the
rounds for each (wall clock, and CPU time for the analysis), the ratio
analysis / parse, and the findings. The target is
under 2 s per file. ``analyze`` runs in this process, as it does inside the
review's analysis subprocess (whose start-up is not counted here).
Nothing here asserts: it prints figures.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.review.analysis import analyze  # noqa: E402
from app.review.analysis.js_rules import grammar  # noqa: E402

PYTHON_BLOCK = '''
def handler_{n}(payload, session):
    """Handle request {n}."""
    items = [item for item in payload.get("items", []) if item]
    total = 0
    for item in items:
        if isinstance(item, dict):
            total += int(item.get("value", 0))
        else:
            total += len(str(item))
    url = BASE + "/items/" + str({n})
    if total > {n}:
        response = requests.get(payload["callback"], timeout=5)
        session.log("callback %s", response.status_code)
    if payload.get("debug"):
        subprocess.run(["echo", str(total)], check=True)
    return {{"id": {n}, "total": total, "count": len(items), "url": url}}
'''
PYTHON_RISKS = [
    "    subprocess.run(payload['cmd'], shell=True)\n",
    "    eval(payload['expr'])\n",
    "    open(payload['path'], 'w').write('x')\n",
    "    token = os.environ.get('API_TOKEN')\n",
]
JS_BLOCK = '''
async function handler{n}(payload, session) {{
  const items = (payload.items || []).filter(Boolean);
  let total = 0;
  for (const item of items) {{
    total += typeof item === 'object' ? Number(item.value || 0) : String(item).length;
  }}
  const url = `${{BASE}}/items/{n}`;
  if (total > {n}) {{
    const response = await fetch(payload.callback);
    session.log('callback', response.status);
  }}
  if (payload.debug) {{
    execFileSync('echo', [String(total)]);
  }}
  return {{ id: {n}, total, count: items.length, url }};
}}
'''
JS_RISKS = [
    "  exec(`ls ${payload.dir}`);\n",
    "  eval(payload.expr);\n",
    "  fs.writeFileSync(payload.path, 'x');\n",
    "  const token = process.env.API_TOKEN;\n",
]


def generate(lines: int, header: str, block: str, risks: list[str], closing: str) -> str:
    parts, count, n = [header], header.count("\n"), 0
    while count < lines:
        text = block.format(n=n)
        if n % 5 == 0:  # a risky line in every fifth function
            cut = text.index("\n", text.index("total = 0"))
            text = text[:cut + 1] + risks[n // 5 % len(risks)] + text[cut + 1:]
            text = text.replace("\n\n", "\n")
        parts.append(text)
        count += text.count("\n")
        n += 1
    return "".join(parts) + closing


def python_tool(lines: int) -> str:
    header = "import os\nimport subprocess\n\nimport requests\n\nBASE = 'https://api.example.org'\n"
    return generate(lines, header, PYTHON_BLOCK, PYTHON_RISKS, "")


def js_tool(lines: int) -> str:
    header = ("'use strict';\nconst fs = require('fs');\nconst { exec, execFileSync } = require('child_process');\n"
              "const BASE = 'https://api.example.org';\n")
    return generate(lines, header, JS_BLOCK, JS_RISKS, "module.exports = {};\n")


def timed(fn, rounds: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds: on a shared machine the CPU time is the steadier figure."""
    walls, cpus = [], []
    for _ in range(rounds):
        started, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    permissions = ["network", "process"]
    js_parser = grammar("javascript").parser
    cases = [
        ("python", python_tool(args.lines), lambda source: ast.parse(source), "ast.parse"),
        ("javascript", js_tool(args.lines), lambda source: js_parser.parse(source.encode()), "tree-sitter parse"),
    ]
    # Imports and bandit's plugins, once: on a whole small tool, since a cut one does not parse and
    # would leave bandit to be loaded inside the first measured round.
    analyze(python_tool(300), "python", permissions)
    analyze(js_tool(300), "javascript", permissions)
    print(f"{'language':<12}{'lines':>7}  {'baseline (wall)':<26}{'analysis wall':>14}{'cpu':>8}{'ratio':>8}  findings")
    for language, source, baseline, name in cases:
        parse_time, _ = timed(lambda source=source, baseline=baseline: baseline(source), args.rounds)
        analysis_time, analysis_cpu = timed(
            lambda source=source, language=language: analyze(source, language, permissions), args.rounds)
        result = analyze(source, language, permissions)
        counts = ", ".join(f"{n} {s}" for s, n in result["stats"]["by_severity"].items() if n)
        print(f"{language:<12}{source.count(chr(10)):>7}  {name + f' {parse_time:.3f}s':<26}{analysis_time:>13.3f}s"
              f"{analysis_cpu:>7.3f}s{analysis_time / parse_time:>7.1f}x  {counts}")
        verdict = "under" if analysis_time < 2 else "OVER"
        print(f"{'':<12}target 2 s: {verdict}; risk score {result['risk_score']}")


if __name__ == "__main__":
    main()
