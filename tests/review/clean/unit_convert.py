# permissions:
"""Converts between units with a fixed table; expressions are parsed as literals, never evaluated."""

import ast

FACTORS = {
    ("km", "mi"): 0.621371,
    ("mi", "km"): 1.609344,
    ("kg", "lb"): 2.204623,
    ("lb", "kg"): 0.453592,
}


def parse_number(text: str) -> float:
    value = ast.literal_eval(text.strip())
    if not isinstance(value, (int, float)):
        raise ValueError("a number is expected")
    return float(value)


def convert(value: float, source: str, target: str) -> float:
    if source == target:
        return value
    if (source, target) in FACTORS:
        return value * FACTORS[(source, target)]
    if (source, target) == ("c", "f"):
        return value * 9 / 5 + 32
    if (source, target) == ("f", "c"):
        return (value - 32) * 5 / 9
    raise ValueError(f"cannot convert {source} to {target}")


def run(arguments: dict) -> dict:
    value = parse_number(str(arguments["value"]))
    result = convert(value, arguments["from"].lower(), arguments["to"].lower())
    return {"value": round(result, 6), "unit": arguments["to"]}
