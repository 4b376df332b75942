"""docs/configuration.md is generated from the settings schema and must never drift from it."""

import json
import subprocess
import sys

from app.core import config_reference
from app.core.fields import OPEN, Field
from app.core.settings import SCHEMA
from tests.support.server import ROOT

REFERENCE = ROOT / "docs" / "configuration.md"


def test_committed_reference_matches_the_schema():
    committed = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert committed == config_reference.render(), (
        "docs/configuration.md differs from the settings schema: regenerate it with "
        f"`{config_reference.REGENERATE}` (or `.venv/bin/python -m app.core.config_reference > docs/configuration.md`)"
    )


def test_every_key_has_a_one_line_description():
    missing = [
        f"{section}.{key}"
        for section, fields in SCHEMA.items() if fields is not OPEN
        for key, field in fields.items()
        if not field.help.strip() or "\n" in field.help
    ]
    assert not missing, f"give these keys a one-line help= in their settings module: {', '.join(missing)}"


def test_every_key_is_listed_under_its_section_with_its_default():
    page = config_reference.render()
    for section, fields in SCHEMA.items():
        body = page.split(f"\n## [{section}]\n", 1)[1].split("\n## [", 1)[0]
        if fields is OPEN:
            assert f"[{section}.NAME]" in body
            continue
        for key, field in fields.items():
            row = f"| `{key}` | `{field.kind}` | `{json.dumps(field.default, ensure_ascii=False)}` |"
            assert row in body, (section, key)


def test_rows_show_type_default_range_restart_and_secrecy():
    schema = {
        "demo": {
            "mode": Field("str", "fast", choices=("fast", "safe"), help="How to run."),
            "count": Field("int", 3, hot=False, minimum=1, maximum=10, help="How many."),
            "ratio": Field("float", 0.5, minimum=0.1, help="A share."),
            "password": Field("str", "", secret=True, help="Used to log in."),
            "pipes": Field("list", ["a|b"], help="Kept | escaped."),
        },
        "extras": OPEN,
    }
    page = config_reference.render(schema)
    assert '| `mode` | `str` | `"fast"` | `"fast"`, `"safe"` | at once |  | How to run. |' in page
    assert "| `count` | `int` | `3` | 1 to 10 | restart |  | How many. |" in page
    assert "| `ratio` | `float` | `0.5` | at least 0.1 | at once |  | A share. |" in page
    assert '| `password` | `str` | `""` |  | at once | yes | Used to log in. |' in page
    assert '| `pipes` | `list` | `["a\\|b"]` |  | at once |  | Kept \\| escaped. |' in page
    assert "## [extras]\n\nFree-form: one table per name (`[extras.NAME]`)" in page
    assert page.index("## [demo]") < page.index("## [extras]")


def test_the_generator_prints_the_page():
    printed = subprocess.run([sys.executable, "-m", "app.core.config_reference"], cwd=ROOT, capture_output=True,
                             text=True, check=True, timeout=60).stdout
    assert printed == config_reference.render()
    assert printed.startswith("# Configuration reference\n")


def test_flask_config_reference_prints_the_page(app):
    result = app.test_cli_runner().invoke(args=["config", "reference"])
    assert result.exit_code == 0, result.output
    assert result.output == config_reference.render()
