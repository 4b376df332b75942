# permissions: filesystem:read
"""Column statistics of a CSV file the user names."""

import csv
import statistics
from pathlib import Path

MAX_ROWS = 100_000


def column_stats(path: str, column: str) -> dict:
    values = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader):
            if number >= MAX_ROWS:
                break
            try:
                values.append(float(row[column]))
            except (KeyError, ValueError):
                continue
    if not values:
        return {"column": column, "count": 0}
    return {
        "column": column,
        "count": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "stdev": statistics.pstdev(values),
        "min": min(values),
        "max": max(values),
    }


def run(arguments: dict) -> dict:
    path = Path(arguments["path"]).expanduser()
    if path.suffix.lower() != ".csv":
        raise ValueError("only .csv files are read")
    return column_stats(str(path), arguments["column"])
