"""Our rules for JavaScript and TypeScript tools, on tree-sitter syntax trees (never run).

Queries find the calls, constructions and ``process.env`` uses; names are
resolved through the file's ``require`` and ``import`` bindings (``const cp =
require("child_process")``, ``import { exec } from "node:child_process"``), so
an alias does not hide a call. Tree-sitter recovers from syntax errors, so a
file that does not fully parse is still checked, and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from app.review.analysis.findings import Finding, snippet_of
from app.review.analysis.python_rules import FIXED_HOST, SENSITIVE_PATHS, TEMP_PREFIXES, Rule, rule
from app.review.analysis.source import split_lines

CALLS = "(call_expression function: (_) @fn arguments: (_) @args) @call"
NEWS = "(new_expression constructor: (_) @fn arguments: (arguments)? @args) @call"
ENV = ('((member_expression object: (identifier) @obj property: (property_identifier) @prop) @env '
       '(#eq? @obj "process") (#eq? @prop "env"))')
REQUIRES = ('(variable_declarator name: (_) @name value: (call_expression function: (identifier) @req '
            'arguments: (arguments . (string) @module)) (#eq? @req "require"))')
IMPORTS = "(import_statement (import_clause) @clause source: (string) @module)"
ERRORS = "(ERROR) @error"
DECLARATIONS = "(variable_declarator name: (identifier) @name value: (_) @value)"

SHELL = {"child_process.exec", "child_process.execSync"}
SPAWN = {"child_process.spawn", "child_process.spawnSync", "child_process.execFile",
         "child_process.execFileSync", "child_process.fork"}
VM = {"vm.runInNewContext", "vm.runInThisContext", "vm.runInContext", "vm.compileFunction", "vm.Script",
      "vm.SourceTextModule"}
FS_WRITES = {"writeFile", "writeFileSync", "appendFile", "appendFileSync", "createWriteStream", "unlink",
             "unlinkSync", "rm", "rmSync", "rmdir", "rmdirSync", "rename", "renameSync", "copyFile",
             "copyFileSync", "cp", "cpSync", "chmod", "chmodSync", "chown", "chownSync", "mkdir", "mkdirSync",
             "symlink", "symlinkSync", "truncate", "truncateSync", "outputFile", "outputFileSync", "remove",
             "removeSync", "writeJson", "writeJsonSync", "move", "moveSync"}
FS_READS = {"readFile", "readFileSync", "createReadStream", "readdir", "readdirSync", "open", "openSync",
            "readJson", "readJsonSync", "stat", "statSync", "access", "accessSync", "existsSync"}
FS_MODULES = {"fs": "fs", "fs/promises": "fs.promises", "fs-extra": "fs", "graceful-fs": "fs"}
NETWORK_CALLS = {"fetch", "globalThis.fetch", "window.fetch", "axios", "got", "ky", "superagent", "needle",
                 "node-fetch", "undici.fetch", "undici.request", "http.request", "http.get", "https.request",
                 "https.get", "net.connect", "net.createConnection", "tls.connect", "dgram.createSocket",
                 "http2.connect", "WebSocket", "XMLHttpRequest", "ws", "EventSource", "http.createServer",
                 "https.createServer", "net.createServer"}
NETWORK_METHODS_OF = {"axios", "got", "ky", "superagent", "needle", "undici"}
LITERALS = ("string",)
ENCODED = ("atob(", "base64", "fromCharCode", "unescape(", "decodeURIComponent(")
MAX_ERRORS = 20
# Tree-sitter's query engine slows down sharply past some 40,000 levels of nesting; no real code comes close.
MAX_TREE_DEPTH = 30_000
WORD = re.compile(r"[A-Za-z_$][\w$]*")


# One query of all patterns: the cursor walks the tree once, however many patterns it holds.
PATTERNS = ("calls", CALLS), ("news", NEWS), ("env", ENV), ("requires", REQUIRES), ("imports", IMPORTS), \
    ("declarations", DECLARATIONS), ("errors", ERRORS)


@dataclass(frozen=True)
class Grammar:
    parser: object
    query: object


@cache
def grammar(language: str) -> Grammar:
    import tree_sitter

    if language == "typescript":
        import tree_sitter_typescript

        lang = tree_sitter.Language(tree_sitter_typescript.language_typescript())
    else:
        import tree_sitter_javascript

        lang = tree_sitter.Language(tree_sitter_javascript.language())
    query = tree_sitter.Query(lang, "\n".join(pattern for _, pattern in PATTERNS))
    return Grammar(tree_sitter.Parser(lang), query)


SHELL_INJECTION = rule(
    "js-shell-injection", "high", "command_injection", "Shell command built at run time",
    "child_process runs a command computed at run time through a shell: any input that reaches it can run "
    "arbitrary commands.", "Use execFile/spawn with a fixed program and an argument array, without shell: true.",
    "CWE-78", "process", 0.9)
SHELL_CONSTANT = rule(
    "js-shell", "medium", "command_injection", "Shell command",
    "The tool runs a fixed command through a shell.",
    "Use execFile/spawn with an argument array instead of a shell.", "CWE-78", "process")
PROCESS_COMPUTED = rule(
    "js-process-computed", "medium", "command_injection", "Program chosen at run time",
    "A child process is started with a program computed at run time.",
    "Start only known programs; validate or allow-list the arguments that come from input.", "CWE-78",
    "process", 0.7)
PROCESS = rule(
    "js-process", "low", "process", "Child process", "The tool starts another program.",
    "Make sure the program and its arguments are fixed or validated.", "CWE-78", "process", 0.9)
EVAL_ENCODED = rule(
    "js-eval-encoded", "critical", "code_injection", "Encoded code executed",
    "Code hidden in an encoded string is decoded and executed: what runs cannot be reviewed.",
    "Remove the hidden code; submit the code that runs as plain source.", "CWE-506", None, 0.9)
EVAL = rule(
    "js-eval", "high", "code_injection", "Dynamic code evaluation",
    "eval / new Function / vm runs code computed at run time: any input that reaches it runs with the tool's "
    "rights.", "Parse data with JSON.parse, or dispatch on a fixed table of functions.", "CWE-95", None, 0.9)
EVAL_CONSTANT = rule(
    "js-eval-constant", "medium", "code_injection", "Dynamic code evaluation of a fixed string",
    "A fixed string of code is evaluated, which hides what runs from readers and tools.",
    "Write the code out directly.", "CWE-95", None, 0.7)
TIMER_STRING = rule(
    "js-timer-string", "medium", "code_injection", "Timer with a string of code",
    "setTimeout/setInterval given a string evaluates it as code.", "Pass a function instead of a string.",
    "CWE-95", None, 0.8)
DYNAMIC_REQUIRE = rule(
    "js-dynamic-require", "high", "code_injection", "Module loaded by a computed name",
    "require()/import() loads a module whose name is computed at run time: input can choose what code runs.",
    "Load modules by literal names, or map allowed names to modules in a fixed table.", "CWE-829", None, 0.8)
NETWORK_COMPUTED = rule(
    "js-network-computed-url", "medium", "network_egress", "Request to a computed address",
    "A network request goes to an address computed at run time: input may steer it to internal services or "
    "send data out.", "Allow-list the hosts the tool may reach and validate URLs before requesting them.",
    "CWE-918", "network", 0.7)
NETWORK = rule(
    "js-network", "low", "network_egress", "Network access",
    "The tool opens a network connection or makes an HTTP request.",
    "Make sure the destination is expected and declared.", None, "network", 0.9)
SENSITIVE_WRITE = rule(
    "js-sensitive-write", "high", "filesystem", "Write to a sensitive system path",
    "The tool changes a file that controls the system or its accounts.",
    "A tool must not change system or account files; write to a temporary directory.", "CWE-22",
    "filesystem:write", 0.85)
FILE_WRITE = rule(
    "js-file-write", "medium", "filesystem", "File write outside a temporary directory",
    "The tool creates, changes or deletes files outside a temporary directory.",
    "Write under os.tmpdir() (fs.mkdtemp) or declare and confine the path.", "CWE-73", "filesystem:write", 0.7)
SENSITIVE_READ = rule(
    "js-sensitive-read", "high", "data_exposure", "Read of a credential or system file",
    "The tool reads a file that holds credentials or system secrets.",
    "A tool must not read keys or credential files; receive what it needs through its configuration.",
    "CWE-200", "filesystem:read", 0.85)
FILE_READ = rule(
    "js-file-read", "info", "filesystem", "File read", "The tool reads files.",
    "Declare the filesystem permission and read only the files the tool needs.", None, "filesystem:read")
ENV_DUMP = rule(
    "js-env-dump", "medium", "secrets_access", "Whole environment read",
    "The tool reads the whole of process.env, which holds the secrets of the process that runs it.",
    "Read only the variables the tool needs, by name.", "CWE-526", "environment", 0.8)
ENV_READ = rule(
    "js-env-read", "info", "secrets_access", "Environment variable read",
    "The tool reads an environment variable.", "Declare the environment permission.", None, "environment", 0.9)
TOO_DEEP = rule(
    "too-complex", "high", "analysis", "Code too complex to analyse",
    "The code is nested too deeply to be analysed, so its behaviour could not be reviewed.",
    "Flatten the deeply nested expressions; code no reviewer can read must not be approved.", None, None, 1.0)
PARTIAL_PARSE = rule(
    "js-parse-errors", "medium", "analysis", "Code did not fully parse",
    "Parts of the file are not valid syntax; the rules ran on the rest, and what did not parse was not "
    "reviewed.", "Submit code that parses.", None, None, 0.9)


def text(node) -> str:
    return node.text.decode("utf-8", "replace") if node is not None else ""


def is_literal(node) -> bool:
    if node is None:
        return False
    if node.type in LITERALS:
        return True
    return node.type == "template_string" and not any(c.type == "template_substitution" for c in node.children)


def string_value(node) -> str:
    return text(node)[1:-1]


class ScriptRules:
    def __init__(self, source: bytes, language: str):
        self.grammar = grammar(language)
        self.source = source
        self.tree = self.grammar.parser.parse(source)
        self.lines = split_lines(source.decode("utf-8", "replace"))
        self.names: dict[str, str] = {}
        self.constants: set[str] = set()  # names declared with a literal string
        self.temp_names: set[str] = set()  # names declared from a temporary directory
        self.findings: list[Finding] = []

    def run(self) -> list[Finding]:
        from tree_sitter import QueryCursor

        root = self.tree.root_node
        if _deeper_than(root, MAX_TREE_DEPTH):
            self._add(TOO_DEEP, root)
            return self.findings
        self.matches = {name: [] for name, _ in PATTERNS}
        for index, match in QueryCursor(self.grammar.query).matches(root):
            self.matches[PATTERNS[index][0]].append(match)
        self._bind()
        self._bind_declarations()
        for match in self.matches["calls"] + self.matches["news"]:
            self._call(match["call"][0], match["fn"][0], match.get("args", [None])[0])
        for match in self.matches["env"]:
            self._env(match["env"][0])
        if root.has_error:
            self._errors(root)
        return self.findings

    # ---- names ----------------------------------------------------------------------

    def _bind(self) -> None:
        for match in self.matches["requires"]:
            self._bind_pattern(match["name"][0], _module(string_value(match["module"][0])))
        for match in self.matches["imports"]:
            module = _module(string_value(match["module"][0]))
            for part in match["clause"][0].named_children:
                self._bind_import(part, module)

    def _bind_declarations(self) -> None:
        """Literal constants, and names whose value comes from a temporary directory, in source order."""
        for match in sorted(self.matches["declarations"], key=lambda m: m["name"][0].start_byte):
            name, value = text(match["name"][0]), match["value"][0]
            if is_literal(value):
                self.constants.add(name)
            elif self._in_temp_dir(value):
                self.temp_names.add(name)

    def _in_temp_dir(self, node) -> bool:
        if node is None:
            return False
        if is_literal(node):
            return string_value(node).startswith(TEMP_PREFIXES)
        source = self.head(node, 1024)
        return "tmpdir" in source or "mkdtemp" in source or bool(self.temp_names.intersection(
            WORD.findall(source)))

    def _fixed_address(self, node) -> bool:
        """A literal address, a literal constant, or a template that starts with a literal scheme and host."""
        while node.type == "binary_expression" and text(node.child_by_field_name("operator")) == "+":
            node = node.child_by_field_name("left")
            if is_literal(node):
                return bool(FIXED_HOST.match(string_value(node)))
        if is_literal(node):
            return True
        if node.type == "identifier":
            return text(node) in self.constants
        if node.type == "template_string" and node.named_child_count:
            first = node.named_children[0]
            if first.type == "string_fragment":
                return bool(FIXED_HOST.match(text(first)))
            inner = first.named_children[0] if first.type == "template_substitution" and first.named_child_count \
                else None
            return inner is not None and inner.type == "identifier" and text(inner) in self.constants
        return False

    def head(self, node, limit: int) -> str:
        """The start of a node's text, sliced from the source: arguments can be megabytes long."""
        if node is None:
            return ""
        return self.source[node.start_byte:min(node.end_byte, node.start_byte + limit)].decode("utf-8", "replace")

    def _bind_pattern(self, pattern, module: str) -> None:
        if pattern.type == "identifier":
            self.names[text(pattern)] = module
            return
        if pattern.type != "object_pattern":
            return
        for part in pattern.named_children:
            if part.type == "shorthand_property_identifier_pattern":
                self.names[text(part)] = f"{module}.{text(part)}"
            elif part.type == "pair_pattern":
                key, value = part.child_by_field_name("key"), part.child_by_field_name("value")
                if value is not None and value.type == "identifier":
                    self.names[text(value)] = f"{module}.{text(key)}"

    def _bind_import(self, part, module: str) -> None:
        if part.type == "identifier":  # the default import
            self.names[text(part)] = module
        elif part.type == "namespace_import":
            for name in part.named_children:
                self.names[text(name)] = module
        elif part.type == "named_imports":
            for spec in part.named_children:
                name, alias = spec.child_by_field_name("name"), spec.child_by_field_name("alias")
                if name is not None:
                    self.names[text(alias or name)] = f"{module}.{text(name)}"

    def qualname(self, node) -> str | None:
        """``a.b.c`` with ``a`` resolved through require/import bindings; a loop, since chains may be long."""
        parts = []
        while True:
            if node.type == "member_expression":
                parts.append(text(node.child_by_field_name("property")))
                node = node.child_by_field_name("object")
            elif node.type == "subscript_expression" and is_literal(node.child_by_field_name("index")):
                parts.append(string_value(node.child_by_field_name("index")))
                node = node.child_by_field_name("object")
            elif node.type == "parenthesized_expression" and node.named_child_count == 1:
                node = node.named_children[0]
            else:
                break
            if node is None:
                return None
        if node.type == "call_expression":
            base = self._required_module(node)
        elif node.type == "identifier":
            base = self.names.get(text(node), text(node))
        else:
            return None
        if base is None:
            return None
        return ".".join([base, *reversed(parts)])

    def _required_module(self, call) -> str | None:
        function, arguments = call.child_by_field_name("function"), call.child_by_field_name("arguments")
        if function is None or function.type != "identifier" or text(function) != "require" or arguments is None:
            return None
        first = _first(arguments)
        return _module(string_value(first)) if is_literal(first) else None

    # ---- rules ----------------------------------------------------------------------

    def _call(self, call, function, arguments) -> None:
        first = _first(arguments)
        if function.type == "import":
            if not is_literal(first):
                self._add(DYNAMIC_REQUIRE, call)
            return
        name = self.qualname(function)
        if name is None:
            return
        for check in (self._process, self._code, self._network, self._files):
            if check(call, name, arguments, first):
                return

    def _process(self, call, name, arguments, first) -> bool:
        if name in SHELL or (name in SPAWN and _shell_option(arguments)):
            self._add(SHELL_CONSTANT if is_literal(first) else SHELL_INJECTION, call)
            return True
        if name in SPAWN:
            self._add(PROCESS if is_literal(first) else PROCESS_COMPUTED, call)
            return True
        return False

    def _code(self, call, name, arguments, first) -> bool:
        if name in ("eval", "window.eval", "globalThis.eval", "Function", "globalThis.Function") or name in VM:
            start = self.head(arguments, 4096)
            if arguments is not None and any(marker in start for marker in ENCODED):
                self._add(EVAL_ENCODED, call)
            elif arguments is not None and arguments.named_child_count and all(
                    is_literal(arg) for arg in arguments.named_children):
                self._add(EVAL_CONSTANT, call)
            else:
                self._add(EVAL, call)
            return True
        if name in ("setTimeout", "setInterval", "setImmediate") and first is not None and (
                first.type in ("string", "template_string", "binary_expression")):
            self._add(TIMER_STRING, call)
            return True
        if name == "require":
            if not is_literal(first):
                self._add(DYNAMIC_REQUIRE, call)
            return True
        return False

    def _network(self, call, name, arguments, first) -> bool:
        base, _, method = name.rpartition(".")
        if name not in NETWORK_CALLS and base not in NETWORK_METHODS_OF:
            return False
        listening = method.endswith("createServer") or name == "dgram.createSocket"
        computed = first is not None and first.type != "object" and not listening and not self._fixed_address(first)
        self._add(NETWORK_COMPUTED if computed else NETWORK, call)
        return True

    def _files(self, call, name, arguments, first) -> bool:
        base, _, method = name.rpartition(".")
        if base not in ("fs", "fs.promises") or method not in FS_WRITES | FS_READS:
            return False
        if self._in_temp_dir(first):
            return True
        path = self.head(first, 512)
        sensitive = any(marker in path for marker in SENSITIVE_PATHS)
        if method in FS_WRITES:
            self._add(SENSITIVE_WRITE if sensitive else FILE_WRITE, call)
        else:
            self._add(SENSITIVE_READ if sensitive else FILE_READ, call)
        return True

    def _env(self, node) -> None:
        parent = node.parent
        one_variable = parent is not None and (
            (parent.type == "member_expression" and parent.child_by_field_name("object") == node)
            or (parent.type == "subscript_expression" and parent.child_by_field_name("object") == node)
            or (parent.type == "variable_declarator" and _destructures(parent)))
        self._add(ENV_READ if one_variable else ENV_DUMP, node)

    def _errors(self, root) -> None:
        errors = [match["error"][0] for match in self.matches["errors"]]
        first = min(errors, key=lambda n: n.start_byte) if errors else root
        self._add(PARTIAL_PARSE, first)
        self.findings[-1].description += f" ({len(errors) if len(errors) < MAX_ERRORS else 'many'} error regions)"

    def _add(self, chosen: Rule, node) -> None:
        line = node.start_point[0] + 1
        snippet = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        self.findings.append(Finding(
            rule_id=chosen.rule_id, severity=chosen.severity, category=chosen.category, title=chosen.title,
            description=chosen.description, recommendation=chosen.recommendation, line=line, cwe=chosen.cwe,
            snippet=snippet_of(snippet), confidence=chosen.confidence, capability=chosen.capability,
        ))


def _deeper_than(root, limit: int) -> bool:
    """Whether the tree nests deeper than ``limit``: one walk with a cursor, stopping once it knows."""
    cursor, depth = root.walk(), 0
    while True:
        if cursor.goto_first_child():
            depth += 1
            if depth > limit:
                return True
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return False
            depth -= 1


def _module(name: str) -> str:
    name = name.removeprefix("node:")
    return FS_MODULES.get(name, name)


def _first(arguments):
    if arguments is None or arguments.type != "arguments" or not arguments.named_child_count:
        return None
    return arguments.named_children[0]


def _shell_option(arguments) -> bool:
    if arguments is None:
        return False
    for arg in arguments.named_children:
        if arg.type != "object":
            continue
        for pair in arg.named_children:
            key, value = pair.child_by_field_name("key"), pair.child_by_field_name("value")
            if key is not None and text(key).strip("'\"") == "shell" and value is not None and value.type != "false":
                return True
    return False


def _destructures(declarator) -> bool:
    name = declarator.child_by_field_name("name")
    return name is not None and name.type == "object_pattern" and not any(
        part.type == "rest_pattern" for part in name.named_children)


def analyse(source: str, language: str) -> tuple[list[Finding], dict]:
    rules = ScriptRules(source.encode("utf-8"), language)
    findings = rules.run()
    return findings, {"parsed": not rules.tree.root_node.has_error}
