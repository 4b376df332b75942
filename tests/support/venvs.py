"""Virtual environments of their own for clients that pin their own dependencies (SDK releases, schemapin).

Each is made once and kept in pytest's cache directory, or a fixed temp
directory when the cache plugin is disabled; a marker file says it is complete.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path


def package_python(config, requirement: str) -> Path:
    """The interpreter of a virtual environment with ``requirement`` (``name==version``) installed."""
    name = requirement.replace("==", "-")
    cache = getattr(config, "cache", None)
    venv = Path(cache.mkdir(name)) if cache is not None else Path(tempfile.gettempdir()) / f"lockgate-{name}"
    python = venv / "bin" / "python"
    marker = venv / "installed"
    if not marker.exists() or marker.read_text() != requirement:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", requirement], check=True, timeout=900)
        marker.write_text(requirement)
    return python
