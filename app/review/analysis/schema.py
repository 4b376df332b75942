"""``analyze_schema``: a submitted tool *schema* (name, description, parameters) read for what it tells a model.

A tool's description and parameter texts go straight into an agent's
prompt, so the risks are in words: instructions aimed at the model, text
hidden from the person approving it, requests to send data somewhere, code
smuggled in strings, and invitations to run away with resources. Every
string of the schema (keys too) is checked, walking it iteratively with
bounds on depth and size, so no schema can make the check hang.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from dataclasses import dataclass

from app.review.analysis import text_rules
from app.review.analysis.findings import Finding, report, snippet_of
from app.review.analysis.source import MAX_SOURCE_BYTES, AnalysisInputError

SCHEMA_CATEGORIES = ("schema_injection", "privilege_escalation", "data_exposure", "malicious_code",
                     "resource_abuse")
MAX_DEPTH = 32
MAX_STRINGS = 5000
MAX_PROPERTIES = 500
MAX_VALUES = 100_000  # numbers and lists count too: a million-item enum is no lighter than its strings
MAX_SCANNED_CHARS = 100_000
LONG_TEXT = 20_000
HUGE_LIMIT = 10**8
LIMIT_KEYS = ("maxLength", "maximum", "maxItems", "maxProperties", "exclusiveMaximum")
COMMAND_PARAMETERS = {"command", "cmd", "shell", "script", "code", "exec", "eval", "shell_command", "bash",
                      "powershell", "sql", "raw_sql", "program"}
CREDENTIAL_PARAMETERS = re.compile(r"(?i)(passw(or)?d|passwd|secret|token|api_?key|private_?key|credential|"
                                   r"cookie|session_?id|ssn|credit_?card)")


@dataclass(frozen=True)
class Pattern:
    rule_id: str
    severity: str
    category: str
    cwe: str
    title: str
    description: str
    recommendation: str
    regex: re.Pattern


# Patterns stay within a sentence: "[^.\n]" spelled so a dot inside a path ("~/.ssh") does not end it.
def pattern(rule_id, severity, category, cwe, title, description, recommendation, regex, flags=re.I) -> Pattern:
    return Pattern(rule_id, severity, category, cwe, title, description, recommendation, re.compile(regex, flags))


REMOVE_INSTRUCTIONS = "Describe what the tool does for the user; remove text addressed to the model."
PATTERNS = (
    pattern("schema-override-instructions", "critical", "schema_injection", "CWE-1427",
            "Prompt injection: instruction override",
            "The text tells the model to ignore or replace its instructions.", REMOVE_INSTRUCTIONS,
            r"\b(ignore|disregard|forget|override)\b(?:[^.\n]|\.(?=\S)){0,40}\b(previous|prior|above|earlier|all|any|other|"
            r"system|your)\b(?:[^.\n]|\.(?=\S)){0,20}\b(instructions?|prompts?|rules|directions|guidelines|messages)\b"),
    pattern("schema-role-change", "high", "schema_injection", "CWE-1427", "Prompt injection: role change",
            "The text tries to give the model a new role or speaks as the system.", REMOVE_INSTRUCTIONS,
            r"\byou are now\b|\bfrom now on,? you\b|\b(system prompt|system message|developer message)\b|"
            r"\bact as\b(?:[^.\n]|\.(?=\S)){0,30}\b(admin|root|system|developer|unrestricted)\b"),
    pattern("schema-chat-markup", "high", "schema_injection", "CWE-1427", "Prompt injection: chat markup",
            "The text contains chat-template markup or tags that pose as instructions.", REMOVE_INSTRUCTIONS,
            r"\[/?INST\]|<\|(im_start|im_end|system|user|assistant)\|>|###\s{0,5}(system|instruction)|"
            r"<\s{0,5}/?\s{0,5}(system|important|instructions?|secret|hidden|admin)\s{0,5}>"),
    pattern("schema-hidden-comment", "high", "schema_injection", "CWE-1427", "Hidden instructions",
            "The text carries an HTML comment, which a person reading the rendered description does not see.",
            REMOVE_INSTRUCTIONS, r"<!--[\s\S]{0,2000}?-->"),
    pattern("schema-conceal", "high", "schema_injection", "CWE-1427", "Instruction to hide actions",
            "The text tells the model to keep something from the user.", REMOVE_INSTRUCTIONS,
            r"\b(do not|don't|never|without)\s{1,5}(tell|telling|inform|informing|mention|mentioning|reveal|"
            r"revealing|show|showing|notify|notifying|ask|asking)\b(?:[^.\n]|\.(?=\S)){0,30}\b(user|human|them|anyone)\b"),
    pattern("schema-model-directive", "medium", "schema_injection", "CWE-1427", "Directive to the model",
            "The text gives the model steps to take around the tool call.", REMOVE_INSTRUCTIONS,
            r"\b(before|after|when|whenever)\s{1,5}(using|calling|running|invoking)\s{1,5}(this|any|the|other)\s"
            r"{1,5}tools?\b(?:[^.\n]|\.(?=\S)){0,60}\b(read|send|include|pass|call|fetch|upload|attach|first)\b"),
    pattern("schema-root", "high", "privilege_escalation", "CWE-250", "Asks for elevated privileges",
            "The text asks for root or administrator rights.",
            "A tool must work with the rights it is given; remove the request for elevation.",
            r"\b(sudo|as root|root (access|privileges?|user|shell)|(administrator|admin) (rights|privileges|access)|"
            r"chmod\s{1,5}(\+s|[0-7]?[0-7]{2}7)|setuid|setgid|chown\s{1,5}root)\b"),
    pattern("schema-bypass", "high", "privilege_escalation", "CWE-269", "Asks to bypass safeguards",
            "The text asks to disable or get around security checks.",
            "Remove any instruction to weaken safeguards.",
            r"\b(disable|bypass|turn off|skip|circumvent|ignore)\b(?:[^.\n]|\.(?=\S)){0,30}"
            r"\b(security|auth\w*|sandbox\w*|"
            r"permissions?|verification|safety|guardrails?|restrictions?|approvals?|confirmation)\b"),
    pattern("schema-arbitrary-execution", "high", "privilege_escalation", "CWE-78", "Runs arbitrary commands",
            "The tool says it runs arbitrary commands or code.",
            "Offer specific operations instead of arbitrary execution.",
            r"\b(arbitrary|any|unrestricted)\s{1,5}(shell\s{1,5}|system\s{1,5})?(commands?|code|programs?|scripts?)\b"),
    pattern("schema-send-out", "high", "data_exposure", "CWE-359", "Instruction to send data out",
            "The text asks for data to be sent to an outside destination.",
            "A tool's description must not direct data anywhere; send nothing the user did not ask for.",
            r"\b(send|upload|post|forward|transmit|exfiltrat\w*|leak|copy|email|report)\b(?:[^.\n]|\.(?=\S)){0,60}\b(to|into)"
            r"\b(?:[^.\n]|\.(?=\S)){0,30}(https?://|\b(server|endpoint|webhook|url|e-?mail|address|remote|attacker|"
            r"external)\b)"),
    pattern("schema-credential-read", "high", "data_exposure", "CWE-200", "Asks for credential files",
            "The text asks to read or pass on credentials or key files.",
            "A tool must never ask for keys, passwords or credential files.",
            r"\b(read|cat|open|include|pass|send|attach|collect|get|fetch|upload)\b(?:[^.\n]|\.(?=\S)){0,60}(~/\.ssh|\bid_rsa|"
            r"\bid_ed25519|\.aws/credentials|\.env\b|/etc/passwd|/etc/shadow|\.netrc|\.git-credentials|"
            r"\bprivate keys?\b|\bapi[_ ]?keys?\b|\bpasswords?\b|\bcredentials\b|\bcookies\b|\bsecrets?\b|"
            r"\b(auth|access|session) tokens?\b)"),
    pattern("schema-url", "medium", "data_exposure", "CWE-359", "Outside address in the schema",
            "The text names an outside address a model might be led to contact.",
            "Keep addresses out of descriptions; configure endpoints outside the schema.",
            r"\bhttps?://[^\s\"'<>]{3,200}"),
    pattern("schema-reverse-shell", "critical", "malicious_code", "CWE-506", "Reverse shell",
            "The text contains a reverse-shell command.", "Remove the command.",
            r"/dev/tcp/|\bnc\b[^\n]{0,40}\s-e\s|\bmkfifo\b[^\n]{0,60}\bnc\b|\bsocat\b[^\n]{0,60}exec"),
    pattern("schema-download-run", "critical", "malicious_code", "CWE-494", "Download and run",
            "The text downloads a script and pipes it to a shell.", "Remove the command.",
            r"\b(curl|wget)\b[^|\n]{0,200}\|\s{0,5}(sudo\s{1,5})?(ba|z|da)?sh\b"),
    pattern("schema-destructive-command", "high", "malicious_code", "CWE-506", "Destructive command",
            "The text contains a command that deletes files recursively.", "Remove the command.",
            r"\brm\s{1,5}-[a-z]{0,5}(rf|fr)\b|\bmkfs\.|\bdd\s{1,5}if=[^\n]{0,40}of=/dev/"),
    pattern("schema-code", "high", "malicious_code", "CWE-94", "Code in a text field",
            "A text field contains code that executes commands or other code.",
            "Describe the tool in words; code does not belong in a schema.",
            r"\b(eval|exec)\s{0,5}\(|\bos\.(system|popen)\s{0,5}\(|\bsubprocess\.\w|\bchild_process\b|"
            r"__import__\s{0,5}\(|<script\b|\bjavascript:|\bpowershell\b[^\n]{0,40}\s-(enc|encodedcommand)\b|"
            r"\bbase64\s{1,5}(-d|--decode)\b"),
    pattern("schema-sql", "high", "malicious_code", "CWE-89", "SQL injection payload",
            "A text field contains an SQL injection payload.", "Remove the payload.",
            r";\s{0,5}(drop|truncate)\s{1,5}(table|database)\b|\bunion\s{1,5}(all\s{1,5})?select\b|'\s{0,3}or\s"
            r"{1,3}'?1'?\s{0,3}=\s{0,3}'?1"),
    pattern("schema-mining", "high", "resource_abuse", "CWE-400", "Cryptocurrency mining",
            "The text refers to cryptocurrency mining.", "A tool must not mine or use compute for others.",
            r"\b(crypto[- ]?min(er|ing)|xmrig|coinhive|monero miner|mine (bitcoin|monero|crypto\w*))\b"),
    pattern("schema-fork-bomb", "high", "resource_abuse", "CWE-400", "Fork bomb",
            "The text contains a fork bomb.", "Remove it.", r":\(\)\s{0,3}\{\s{0,3}:\s{0,3}\|\s{0,3}:\s{0,3}&"),
    pattern("schema-unbounded-loop", "medium", "resource_abuse", "CWE-400", "Unbounded repetition",
            "The text asks for work to repeat without end or to call the tool over and over.",
            "Bound every repetition; a tool must finish.",
            r"\b(loop|repeat|retr|call|run|poll|invok)\w*\b(?:[^.\n]|\.(?=\S)){0,40}\b(forever|infinitely|indefinitely|"
            r"endlessly|without (a |any )?(limit|end|stopping)|\d{4,} times)\b|"
            r"\bcall\b(?:[^.\n]|\.(?=\S)){0,20}\bthis tool\b"
            r"(?:[^.\n]|\.(?=\S)){0,30}\b(again|repeatedly)\b"),
)
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
TAGS = re.compile("[\U000e0000-\U000e007f]")
INVISIBLE = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u180e]")
UNICODE_RULES = (
    ("schema-unicode-tags", "critical", TAGS, "invisible Unicode tag characters, which can carry hidden text"),
    ("schema-bidi", "high", BIDI, "bidirectional control characters, which make text read differently than it "
                                  "displays"),
    ("schema-invisible", "medium", INVISIBLE, "zero-width or invisible characters"),
)


def analyze_schema(tool, max_bytes: int = MAX_SOURCE_BYTES) -> dict:
    """Findings, risk score and recommendations for a tool schema (name, description, tool_schema, provider)."""
    started = time.perf_counter()
    _check_shape(tool)
    walk = Walk(max_bytes)
    walk.run(tool)
    findings = list(walk.findings)
    for path, value in walk.strings:
        findings += _string_findings(path, value)
    findings += _name_findings(tool.get("name"))
    stats = {"strings": len(walk.strings), "properties": walk.properties, "depth": walk.depth,
             "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
    return report("schema", findings, stats)


def _check_shape(tool) -> None:
    if not isinstance(tool, dict):
        raise AnalysisInputError("the tool must be an object")
    for key in ("name", "description"):
        if tool.get(key) is not None and not isinstance(tool[key], str):
            raise AnalysisInputError(f"tool.{key} must be a string")
    if tool.get("tool_schema") is not None and not isinstance(tool["tool_schema"], dict):
        raise AnalysisInputError("tool.tool_schema must be an object")


class Walk:
    """Every string of the schema with its path, walked with an explicit stack and bounded."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.size = 0
        self.strings: list[tuple[str, str]] = []
        self.findings: list[Finding] = []
        self.properties = 0
        self.depth = 0
        self.flagged: set[str] = set()

    def run(self, tool: dict) -> None:
        stack = [("", tool, 0)]
        visited = 0
        while stack:
            path, value, depth = stack.pop()
            visited += 1
            if visited > MAX_VALUES:
                self._once("values", _oversized(path, f"more than {MAX_VALUES} values"))
                return
            self.depth = max(self.depth, depth)
            if depth > MAX_DEPTH:
                self._once("deep", _oversized(path, f"nested more than {MAX_DEPTH} levels deep"))
                continue
            if isinstance(value, dict):
                stack += self._dict(path, value, depth)
            elif isinstance(value, list):
                # Never more than the bound onto the stack, however long the list.
                stack += [(f"{path}[{index}]", item, depth + 1) for index, item in enumerate(value[:MAX_VALUES])]
            elif isinstance(value, str):
                self._string(path, value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                self._number(path, value)

    def _dict(self, path: str, value: dict, depth: int) -> list:
        is_properties = path.endswith("properties")
        children = []
        for count, (key, item) in enumerate(value.items()):
            if count >= MAX_VALUES:
                self._once("values", _oversized(path, f"more than {MAX_VALUES} values"))
                break
            key = str(key)
            child = f"{path}.{key}" if path else key
            if is_properties:
                self._property(child, key, item)
            self._string(f"{child} (key)", key)
            if child != "provider.public_key_url":
                children.append((child, item, depth + 1))
        return children

    def _string(self, path: str, value: str) -> None:
        self.size += len(value.encode("utf-8", "replace"))
        if self.size > self.max_bytes:
            raise AnalysisInputError(f"the tool schema is over the size limit of {self.max_bytes} bytes")
        if len(self.strings) >= MAX_STRINGS:
            self._once("many", _oversized(path, f"more than {MAX_STRINGS} strings"))
            return
        if len(value) > LONG_TEXT:
            self._once(f"long:{path}", _oversized(path, f"a text of {len(value)} characters, long enough to hide "
                                                         "instructions in"))
        if value:
            self.strings.append((path, value))

    def _number(self, path: str, value) -> None:
        if path.rsplit(".", 1)[-1] in LIMIT_KEYS and value > HUGE_LIMIT:
            self._once(f"limit:{path}", Finding(
                rule_id="schema-huge-limit", severity="low", category="resource_abuse", title="Very large limit",
                description=f"{path} allows {value:g}, which bounds nothing a tool should handle.",
                recommendation="Set limits the tool can actually serve.", location=path, cwe="CWE-770",
                snippet=str(value)[:40], confidence=0.6))

    def _property(self, path: str, name: str, spec) -> None:
        self.properties += 1
        if self.properties > MAX_PROPERTIES:
            self._once("properties", _oversized(path, f"more than {MAX_PROPERTIES} properties"))
            return
        declared = spec.get("type") if isinstance(spec, dict) else None
        if name.lower() in COMMAND_PARAMETERS and declared in (None, "string"):
            self.findings.append(Finding(
                rule_id="schema-command-parameter", severity="medium", category="privilege_escalation",
                title="Parameter takes a command",
                description=f"The parameter {name!r} takes free text that the tool presumably runs as a command "
                            "or code.",
                recommendation="Take structured parameters (an operation from an enum, validated values) instead.",
                location=path, cwe="CWE-78", snippet=name[:200], confidence=0.6))
        elif CREDENTIAL_PARAMETERS.search(name):
            self.findings.append(Finding(
                rule_id="schema-credential-parameter", severity="low", category="data_exposure",
                title="Parameter takes a credential",
                description=f"The parameter {name!r} asks the model for a credential, which puts the secret in "
                            "the conversation.",
                recommendation="Configure credentials on the tool's side, never as a parameter the model fills.",
                location=path, cwe="CWE-522", snippet=name[:200], confidence=0.6))

    def _once(self, key: str, finding: Finding) -> None:
        if key not in self.flagged:
            self.flagged.add(key)
            self.findings.append(finding)


def _oversized(path: str, what: str) -> Finding:
    return Finding(
        rule_id="schema-oversized", severity="medium", category="resource_abuse", title="Oversized schema",
        description=f"The schema has {what}: more than a model or a reviewer can take in.",
        recommendation="Keep the schema small enough to read.", location=path or "tool", cwe="CWE-400",
        confidence=0.8)


def _string_findings(path: str, value: str) -> list[Finding]:
    scanned = value[:MAX_SCANNED_CHARS]
    found = []
    for rule in PATTERNS:
        match = rule.regex.search(scanned)
        if match:
            found.append(Finding(
                rule_id=rule.rule_id, severity=rule.severity, category=rule.category, title=rule.title,
                description=f"{rule.description} ({path})", recommendation=rule.recommendation, location=path,
                cwe=rule.cwe, snippet=_around(scanned, match), confidence=0.8))
    for rule_id, severity, regex, what in UNICODE_RULES:
        if regex.search(scanned):
            found.append(Finding(
                rule_id=rule_id, severity=severity, category="schema_injection", title="Hidden Unicode characters",
                description=f"The text contains {what} ({path}).",
                recommendation="Remove invisible and control characters; what the reviewer reads must be what the "
                               "model reads.", location=path, cwe="CWE-451",
                snippet=snippet_of(scanned.encode("ascii", "backslashreplace").decode()), confidence=0.9))
    for secret in text_rules.scan(scanned):
        if secret.category == "hardcoded_secret":
            found.append(Finding(
                rule_id=secret.rule_id, severity=secret.severity, category="data_exposure", title=secret.title,
                description=f"{secret.description} ({path})", recommendation=secret.recommendation, location=path,
                cwe=secret.cwe, snippet=secret.snippet, confidence=secret.confidence))
        elif secret.category == "obfuscation":
            found.append(Finding(
                rule_id=secret.rule_id, severity="medium", category="malicious_code", title=secret.title,
                description=f"{secret.description} ({path})", recommendation=secret.recommendation, location=path,
                cwe=secret.cwe, snippet=secret.snippet, confidence=secret.confidence))
    return found


def _around(text: str, match: re.Match) -> str:
    start = max(0, match.start() - 40)
    return snippet_of(text[start:match.end() + 40])


def _name_findings(name) -> list[Finding]:
    """A tool name mixing Latin letters with look-alikes from other scripts impersonates another tool."""
    if not isinstance(name, str) or not name:
        return []
    scripts = {_script(char) for char in name[:200] if char.isalpha()}
    if "LATIN" in scripts and scripts & {"CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE"}:
        return [Finding(
            rule_id="schema-homoglyph-name", severity="high", category="schema_injection",
            title="Look-alike characters in the tool name",
            description=f"The name mixes Latin letters with letters of {', '.join(sorted(scripts - {'LATIN'}))}, "
                        "which can impersonate another tool.",
            recommendation="Name the tool in one script.", location="name", cwe="CWE-1007",
            snippet=json.dumps(name[:100]), confidence=0.85)]
    return []


def _script(char: str) -> str:
    try:
        return unicodedata.name(char).split(" ", 1)[0]
    except ValueError:
        return "UNKNOWN"
