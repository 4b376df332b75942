"""An SDK agent body becomes DSL source that parses, whatever its numbers."""

import pytest

from app.runtime.definition import from_sdk
from app.runtime.dsl import parse


@pytest.mark.parametrize("value", [3.0377794402462097e-145, 1e22, 0.5, 2.0, 1e-5])
def test_numbers_of_any_magnitude_are_written_as_the_dsl_reads_them(value):
    program = parse(from_sdk({"name": "tiny", "top_p": value, "temperature": value}))
    assert program.agent().name == "tiny"
