"""The permission vocabulary, and findings for capabilities the code uses but does not declare.

A tool's declared permissions are what a reviewer approves; code that
reaches further than it says is the finding, whatever it does there.
"""

from __future__ import annotations

from app.review.analysis.findings import Finding

# Capability -> what declaring it allows. A permission is a capability, optionally
# narrowed by a qualifier after a colon ("network:api.example.com"); the qualifier is
# kept for people and does not change what the check accepts.
PERMISSIONS = {
    "network": "open network connections and make HTTP requests",
    "filesystem": "read and write files",
    "filesystem:read": "read files",
    "filesystem:write": "create, change and delete files",
    "process": "start other programs (subprocesses, shells)",
    "environment": "read environment variables",
}
# A capability the code uses -> the permissions any one of which covers it.
COVERED_BY = {
    "network": ("network",),
    "filesystem:read": ("filesystem", "filesystem:read", "filesystem:write"),
    "filesystem:write": ("filesystem", "filesystem:write"),
    "process": ("process",),
    "environment": ("environment",),
}
USES = {
    "process": "starts other programs",
    "network": "opens network connections",
    "filesystem:write": "writes files",
    "filesystem:read": "reads files",
    "environment": "reads environment variables",
}
SEVERITY = {
    "process": "high",
    "network": "medium",
    "filesystem:write": "medium",
    "filesystem:read": "low",
    "environment": "low",
}
RULE = {
    "process": "undeclared-process",
    "network": "undeclared-network",
    "filesystem:write": "undeclared-filesystem-write",
    "filesystem:read": "undeclared-filesystem-read",
    "environment": "undeclared-environment",
}


def normalise(permissions) -> tuple[set[str], list[str]]:
    """The known permissions (qualifiers of network and process dropped) and the unknown ones as given."""
    known: set[str] = set()
    unknown: list[str] = []
    for raw in permissions or ():
        name = str(raw).strip().lower()
        if name in PERMISSIONS:
            known.add(name)
            continue
        base = name.split(":", 1)[0]
        if base in ("network", "process", "environment") and ":" in name:
            known.add(base)
        else:
            unknown.append(str(raw))
    return known, unknown


def undeclared(findings: list[Finding], permissions) -> list[Finding]:
    """One finding per capability used without a permission covering it, at its first use."""
    known, unknown = normalise(permissions)
    uses: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.capability:
            uses.setdefault(finding.capability, []).append(finding)
    found = [_undeclared(capability, seen) for capability, seen in uses.items()
             if not known.intersection(COVERED_BY[capability])]
    found += [_unknown(name) for name in unknown]
    return found


def _undeclared(capability: str, seen: list[Finding]) -> Finding:
    first = min(seen, key=lambda f: f.line or 0)
    more = f" (and {len(seen) - 1} more place{'s' if len(seen) > 2 else ''})" if len(seen) > 1 else ""
    needed = capability
    return Finding(
        rule_id=RULE[capability],
        severity=SEVERITY[capability],
        category="undeclared_capability",
        title=f"Undeclared {capability} access",
        description=(f"The code {USES[capability]} at line {first.line}{more}, "
                     f"but the tool does not declare the '{needed}' permission."),
        recommendation=f"Declare the '{needed}' permission, or remove the code that needs it.",
        line=first.line,
        cwe="CWE-912",
        snippet=first.snippet,
        confidence=0.9,
    )


def _unknown(name: str) -> Finding:
    return Finding(
        rule_id="unknown-permission",
        severity="info",
        category="undeclared_capability",
        title="Unknown permission",
        description=f"The permission {name!r} is not one Lockgate knows ({', '.join(PERMISSIONS)}).",
        recommendation="Declare permissions from the documented vocabulary.",
        location="metadata.permissions",
        confidence=1.0,
        snippet=name[:200],
    )
