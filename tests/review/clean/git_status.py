# permissions: process, filesystem:read
"""Summarises `git status` of a repository the user names."""

import shutil
import subprocess
from pathlib import Path


def status(repository: str) -> dict:
    root = Path(repository).resolve()
    if not (root / ".git").is_dir():
        raise ValueError(f"{root} is not a git repository")
    git = shutil.which("git")
    if git is None:
        raise RuntimeError("git is not installed")
    completed = subprocess.run(
        [git, "-C", str(root), "status", "--porcelain=v1", "--branch"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    changed, untracked, branch = [], [], None
    for line in completed.stdout.splitlines():
        if line.startswith("## "):
            branch = line[3:].split("...")[0]
        elif line.startswith("?? "):
            untracked.append(line[3:])
        elif line.strip():
            changed.append(line[3:])
    return {"branch": branch, "changed": changed, "untracked": untracked}


def run(arguments: dict) -> dict:
    return status(arguments["repository"])
