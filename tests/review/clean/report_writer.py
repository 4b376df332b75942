# permissions:
"""Renders a Markdown report into a temporary directory and returns its text and where it is."""

import hashlib
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

CHECKSUM_SALT = "report-v1"
# A fixed digest of the template, compared at start-up.
TEMPLATE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def render(title: str, rows: list[dict]) -> str:
    lines = [f"# {title}", "", f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", ""]
    if rows:
        headers = list(rows[0])
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "---|" * len(headers))
        for row in rows:
            lines.append("| " + " | ".join(str(row.get(h, "")) for h in headers) + " |")
    return "\n".join(lines) + "\n"


def run(arguments: dict) -> dict:
    text = render(arguments.get("title", "Report"), arguments.get("rows", []))
    directory = Path(tempfile.mkdtemp(prefix="report-"))
    target = directory / "report.md"
    target.write_text(text, encoding="utf-8")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as meta:
        json.dump({"rows": len(arguments.get("rows", []))}, meta)
    digest = hashlib.sha256((CHECKSUM_SALT + text).encode()).hexdigest()
    return {"path": str(target), "sha256": digest, "markdown": text}
