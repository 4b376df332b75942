"""Our own rules for Python tools, on the syntax tree (the code is parsed, never run or imported).

The tree is walked iteratively, so code nested deeper than Python's
recursion limit costs no more than flat code. Names are resolved through
the module's imports (``import subprocess as sp``, ``from os import system``),
so an alias does not hide a call.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from app.review.analysis.findings import Finding, snippet_of

SHELL_ALWAYS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput", "pty.spawn",
                "commands.getoutput", "asyncio.create_subprocess_shell"}
SUBPROCESS = {"subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output",
              "subprocess.Popen", "asyncio.create_subprocess_exec"}
PROCESS_PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn", "os.fork")
DYNAMIC_IMPORT = {"__import__", "importlib.import_module", "importlib.__import__", "imp.load_source",
                  "importlib.util.spec_from_file_location"}
NETWORK_MODULES = ("socket", "requests", "httpx", "urllib.request", "urllib3", "http.client", "aiohttp",
                   "ftplib", "smtplib", "telnetlib", "websocket", "websockets", "paramiko", "pycurl")
NETWORK_PREFIXES = tuple(module + "." for module in NETWORK_MODULES)
NETWORK_LOCAL = ("socket.gethostname", "socket.getfqdn", "requests.exceptions", "requests.codes",
                 "http.client.responses", "socket.timeout", "socket.error", "httpx.Timeout", "urllib3.util",
                 "requests.adapters", "httpx.HTTPError", "requests.RequestException")
DESERIALIZE = {"pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "cPickle.loads", "dill.load",
               "dill.loads", "marshal.load", "marshal.loads", "shelve.open", "jsonpickle.decode", "joblib.load",
               "pandas.read_pickle", "yaml.unsafe_load", "yaml.unsafe_load_all"}
YAML_LOAD = {"yaml.load", "yaml.load_all"}
SAFE_YAML_LOADERS = ("SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader")
FILE_WRITERS = {"os.remove", "os.unlink", "os.rmdir", "os.removedirs", "os.rename", "os.renames", "os.replace",
                "os.chmod", "os.chown", "os.symlink", "os.link", "os.truncate", "os.mkdir", "os.makedirs",
                "shutil.rmtree", "shutil.move", "shutil.copy", "shutil.copy2", "shutil.copyfile",
                "shutil.copytree", "shutil.chown"}
PATH_WRITE_METHODS = {"write_text", "write_bytes", "unlink", "rmdir", "touch", "symlink_to", "hardlink_to",
                      "chmod"}
OPENERS = {"open", "io.open", "codecs.open", "os.open"}
ENV_READERS = {"os.getenv", "os.getenvb", "os.environ.get", "os.environb.get"}
ENVIRON = {"os.environ", "os.environb"}
# Methods of os.environ that read or change variables by name; any other use reads it whole.
ENV_ITEM_METHODS = {"get", "setdefault", "pop", "update", "__getitem__", "__setitem__", "__delitem__",
                    "__contains__"}
DECODERS = {"b64decode", "b32decode", "b16decode", "a85decode", "b85decode", "decodebytes", "decompress",
            "fromhex", "unhexlify", "decode", "rot13", "urlsafe_b64decode"}
TEMP_PREFIXES = ("/tmp/", "/var/tmp/", "/dev/shm/")
SENSITIVE_PATHS = ("/etc/", "~/.ssh", "/.ssh/", "authorized_keys", "id_rsa", "id_ed25519", ".bashrc", ".profile",
                   ".zshrc", "/root/", "/usr/", "/bin/", "/sbin/", "crontab", "/var/spool/cron", ".aws/credentials",
                   ".netrc", ".git-credentials", "/proc/", "/boot/", ".docker/config.json", ".kube/config")
MAX_ARG_NODES = 200
# A URL whose scheme and host are written out: what follows may vary, where it goes does not.
FIXED_HOST = re.compile(r"^[a-z][a-z0-9+.-]{0,20}://[^/{}\s]+/")


@dataclass(frozen=True)
class Rule:
    rule_id: str
    severity: str
    category: str
    title: str
    description: str
    recommendation: str
    cwe: str | None = None
    capability: str | None = None
    confidence: float = 0.8


def rule(rule_id, severity, category, title, description, recommendation, cwe=None, capability=None,
         confidence=0.8) -> Rule:
    return Rule(rule_id, severity, category, title, description, recommendation, cwe, capability, confidence)


SHELL_INJECTION = rule(
    "py-shell-injection", "high", "command_injection", "Shell command built at run time",
    "A shell runs a command computed at run time: any input that reaches it can run arbitrary commands.",
    "Pass the program and its arguments as a list without shell=True, and validate every argument.",
    "CWE-78", "process", 0.9)
SHELL = rule(
    "py-shell", "medium", "command_injection", "Shell command",
    "The tool runs a fixed command through a shell.",
    "Run the program directly with a list of arguments instead of through a shell.", "CWE-78", "process")
PROCESS_COMPUTED = rule(
    "py-process-computed", "medium", "command_injection", "Program chosen at run time",
    "A subprocess is started with a command computed at run time.",
    "Start only known programs; validate or allow-list the arguments that come from input.", "CWE-78",
    "process", 0.7)
PROCESS = rule(
    "py-process", "low", "process", "Subprocess",
    "The tool starts another program.", "Make sure the program and its arguments are fixed or validated.",
    "CWE-78", "process", 0.9)
EXEC_ENCODED = rule(
    "py-exec-encoded", "critical", "code_injection", "Encoded code executed",
    "Code hidden in an encoded or compressed string is decoded and executed: what runs cannot be reviewed.",
    "Remove the hidden code; submit the code that runs as plain source.", "CWE-506", None, 0.95)
EVAL_INPUT = rule(
    "py-eval", "high", "code_injection", "Dynamic code evaluation",
    "eval/exec runs code computed at run time: any input that reaches it runs as Python with the tool's "
    "rights.", "Parse the data instead (json.loads, ast.literal_eval) or dispatch on a fixed table.",
    "CWE-95", None, 0.9)
EVAL_CONSTANT = rule(
    "py-eval-constant", "medium", "code_injection", "Dynamic code evaluation of a fixed string",
    "eval/exec runs a fixed string of code, which hides what runs from readers and tools.",
    "Write the code out directly.", "CWE-95", None, 0.7)
COMPILE = rule(
    "py-compile", "medium", "code_injection", "Code compiled at run time",
    "compile() turns a string computed at run time into code.",
    "Avoid compiling code from data; use a parser for the data format instead.", "CWE-95", None, 0.7)
DYNAMIC_IMPORT_COMPUTED = rule(
    "py-dynamic-import", "high", "code_injection", "Module imported by a computed name",
    "A module whose name is computed at run time is imported: input can choose what code is loaded.",
    "Import modules by their literal names, or map allowed names to modules in a fixed table.",
    "CWE-470", None, 0.8)
DYNAMIC_IMPORT_CONSTANT = rule(
    "py-dynamic-import-constant", "low", "code_injection", "Dynamic import of a fixed module",
    "A module is imported through the import machinery instead of an import statement.",
    "Use a plain import statement so the dependency is visible.", "CWE-470", None, 0.6)
NETWORK_COMPUTED = rule(
    "py-network-computed-url", "medium", "network_egress", "Request to a computed address",
    "A network request goes to an address computed at run time: input may steer it to internal services "
    "or send data out.", "Allow-list the hosts the tool may reach and validate URLs before requesting them.",
    "CWE-918", "network", 0.7)
NETWORK = rule(
    "py-network", "low", "network_egress", "Network access",
    "The tool opens a network connection or makes an HTTP request.",
    "Make sure the destination is expected and declared, and that TLS verification stays on.", None,
    "network", 0.9)
SENSITIVE_WRITE = rule(
    "py-sensitive-write", "high", "filesystem", "Write to a sensitive system path",
    "The tool changes a file that controls the system or its accounts (startup files, keys, system "
    "directories).", "A tool must not change system or account files; write to a temporary directory.",
    "CWE-22", "filesystem:write", 0.85)
FILE_WRITE = rule(
    "py-file-write", "medium", "filesystem", "File write outside a temporary directory",
    "The tool creates, changes or deletes files outside a temporary directory.",
    "Write into a directory from tempfile (mkdtemp, TemporaryDirectory) or declare and confine the path.",
    "CWE-73", "filesystem:write", 0.7)
SENSITIVE_READ = rule(
    "py-sensitive-read", "high", "data_exposure", "Read of a credential or system file",
    "The tool reads a file that holds credentials or system secrets.",
    "A tool must not read keys or credential files; receive what it needs through its configuration.",
    "CWE-200", "filesystem:read", 0.85)
FILE_READ = rule(
    "py-file-read", "info", "filesystem", "File read",
    "The tool reads files.", "Declare the filesystem permission and read only the files the tool needs.",
    None, "filesystem:read", 0.8)
ENV_DUMP = rule(
    "py-env-dump", "medium", "secrets_access", "Whole environment read",
    "The tool reads the whole environment, which holds the secrets of the process that runs it.",
    "Read only the variables the tool needs, by name.", "CWE-526", "environment", 0.8)
ENV_READ = rule(
    "py-env-read", "info", "secrets_access", "Environment variable read",
    "The tool reads an environment variable.", "Declare the environment permission.", None, "environment", 0.9)
UNSAFE_DESERIALIZE = rule(
    "py-unsafe-deserialization", "high", "deserialization", "Unsafe deserialization",
    "Data is deserialized with a format that can run code while loading (pickle, marshal, unsafe YAML).",
    "Use a data-only format (json, yaml.safe_load) for anything that may come from outside.", "CWE-502",
    None, 0.85)
MKTEMP = rule(
    "py-mktemp", "medium", "insecure_temp_file", "Race-prone temporary file name",
    "tempfile.mktemp returns a name another process can create first.",
    "Use tempfile.mkstemp, NamedTemporaryFile or TemporaryDirectory.", "CWE-377", None, 0.9)


class PythonRules:
    def __init__(self, tree: ast.AST, lines: list[str]):
        self.tree = tree
        self.lines = lines
        self.names: dict[str, str] = {}
        self.findings: list[Finding] = []
        self.environ_used: set[int] = set()
        self.constants: set[str] = set()  # module-level names bound to a string literal
        self.temp_names: set[str] = set()  # names bound to a path inside a temporary directory
        self.node_count = 0

    def run(self) -> list[Finding]:
        nodes = list(ast.walk(self.tree))
        self.node_count = len(nodes)
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self._bind(node)
        self._bind_constants()
        self._bind_temp_names(nodes)
        for node in nodes:
            if isinstance(node, ast.Call):
                self._call(node)
            elif isinstance(node, ast.Subscript):
                self._subscript(node)
            elif isinstance(node, ast.Compare):
                self._compare(node)
        self._whole_environ(nodes)
        return self.findings

    # ---- names ----------------------------------------------------------------------

    def _bind(self, node) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    self.names[top] = top
        elif node.module and not node.level:
            for alias in node.names:
                self.names[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def _bind_constants(self) -> None:
        for statement in getattr(self.tree, "body", []):
            if isinstance(statement, ast.Assign) and _is_text(statement.value):
                self.constants.update(t.id for t in statement.targets if isinstance(t, ast.Name))

    def _bind_temp_names(self, nodes) -> None:
        """Names assigned from a temporary directory (directly or through another such name), in source order."""
        bindings = []
        for node in nodes:
            if isinstance(node, ast.Assign):
                bindings += [(node.lineno, target, node.value) for target in node.targets]
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                bindings.append((node.context_expr.lineno, node.optional_vars, node.context_expr))
        for _, target, value in sorted(bindings, key=lambda item: item[0]):
            if isinstance(target, ast.Name) and self._in_temp_dir(value):
                self.temp_names.add(target.id)

    def _fixed_address(self, node) -> bool:
        """A literal address, a module constant, or one built on a literal scheme and host."""
        concatenated = False
        while isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
            node, concatenated = node.left, True  # "https://host/" + path: the leftmost part decides
        if _is_text(node):
            return not concatenated or bool(FIXED_HOST.match(str(node.value)))
        if isinstance(node, ast.Name):
            return node.id in self.constants
        if isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant):
                return bool(FIXED_HOST.match(str(first.value)))
            return isinstance(first, ast.FormattedValue) and isinstance(first.value, ast.Name) and (
                first.value.id in self.constants)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            return _is_text(node.func.value) and bool(FIXED_HOST.match(str(node.func.value.value)))
        return False

    def qualname(self, node) -> str | None:
        """``a.b.c`` with ``a`` resolved through the imports (a call in the chain shows as ``f()``).

        None for anything else. A loop, not recursion: chains may be long.
        """
        parts = []
        while isinstance(node, (ast.Attribute, ast.Call)):
            if isinstance(node, ast.Call):
                parts.append("()")
                node = node.func
            else:
                parts.append("." + node.attr)
                node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(self.names.get(node.id, node.id))
        return "".join(reversed(parts))

    # ---- rules ----------------------------------------------------------------------

    def _call(self, node: ast.Call) -> None:
        name = self.qualname(node.func)
        if name is None:
            self._path_method(node)
            return
        for check in (self._process, self._code, self._network, self._files, self._environment,
                      self._deserialize):
            if check(node, name):
                return
        self._path_method(node)

    def _process(self, node, name) -> bool:
        if name in SHELL_ALWAYS or (name in SUBPROCESS and _shell_true(node)):
            command = _first_arg(node, "args") or _first_arg(node, "cmd") or _first_arg(node, "command")
            self._add(SHELL if _constant_command(command) else SHELL_INJECTION, node)
            return True
        if name in SUBPROCESS or name.startswith(PROCESS_PREFIXES):
            command = _first_arg(node, "args")
            self._add(PROCESS if command is None or _constant_command(command) else PROCESS_COMPUTED, node)
            return True
        return False

    def _code(self, node, name) -> bool:
        if name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            code = _first_arg(node, "source")
            if code is not None and self._decodes(code):
                self._add(EXEC_ENCODED, node)
            else:
                self._add(EVAL_CONSTANT if _is_text(code) else EVAL_INPUT, node)
            return True
        if name in ("compile", "builtins.compile"):
            code = _first_arg(node, "source")
            if not _is_text(code):
                self._add(EXEC_ENCODED if code is not None and self._decodes(code) else COMPILE, node)
            return True
        if name in DYNAMIC_IMPORT:
            target = _first_arg(node, "name")
            self._add(DYNAMIC_IMPORT_CONSTANT if _is_text(target) else DYNAMIC_IMPORT_COMPUTED, node)
            return True
        if name == "tempfile.mktemp":
            self._add(MKTEMP, node)
            return True
        return False

    def _network(self, node, name) -> bool:
        if not name.startswith(NETWORK_PREFIXES) or name.startswith(NETWORK_LOCAL):
            return False
        url = _first_arg(node, "url")
        if url is None and name.rsplit(".", 1)[-1] == "request" and len(node.args) > 1:
            url = node.args[1]  # requests.request(method, url)
        computed = url is not None and not self._fixed_address(url) and not name.startswith("socket.")
        self._add(NETWORK_COMPUTED if computed else NETWORK, node)
        return True

    def _files(self, node, name) -> bool:
        if name in OPENERS:
            path = _first_arg(node, "file") or _first_arg(node, "filename") or _first_arg(node, "path")
            self._file_access(node, path, writes=_opens_for_writing(node, name))
            return True
        if name in FILE_WRITERS:
            self._file_access(node, _first_arg(node, "path") or _first_arg(node, "src"), writes=True)
            return True
        return False

    def _path_method(self, node: ast.Call) -> None:
        """``path.write_text(...)`` and friends, whatever the receiver (often ``(base / "x")``)."""
        func = node.func
        if not isinstance(func, ast.Attribute) or func.attr not in PATH_WRITE_METHODS:
            return
        receiver = self.qualname(func.value)
        if receiver is not None and (receiver.startswith("os.") or not _path_like(receiver)):
            return
        self._file_access(node, func.value, writes=True, confidence=0.6)

    def _file_access(self, node, path, writes: bool, confidence: float | None = None) -> None:
        if self._in_temp_dir(path):
            return
        text = _strings_in(path)
        sensitive = any(marker in text for marker in SENSITIVE_PATHS)
        if writes:
            chosen = SENSITIVE_WRITE if sensitive else FILE_WRITE
        else:
            chosen = SENSITIVE_READ if sensitive else FILE_READ
        self._add(chosen, node, confidence)

    def _in_temp_dir(self, path) -> bool:
        text = _text_of(path)
        if text is not None:
            return text.startswith(TEMP_PREFIXES)
        if path is None:
            return False
        for count, inner in enumerate(ast.walk(path)):
            if count > MAX_ARG_NODES:
                break
            if isinstance(inner, ast.Name) and inner.id in self.temp_names:
                return True
            name = self.qualname(inner) if isinstance(inner, (ast.Name, ast.Attribute)) else None
            if name and (name.startswith("tempfile.") or name.endswith(("tmpdir", "tmp_dir", "temp_dir"))):
                return True
        return False

    def _environment(self, node, name) -> bool:
        if name in ENV_READERS:
            self._add(ENV_READ, node)
            if isinstance(node.func, ast.Attribute):
                self.environ_used.add(id(node.func.value))
            return True
        if name.rsplit(".", 1)[0] in ENVIRON and name.rsplit(".", 1)[-1] in ENV_ITEM_METHODS:
            self.environ_used.add(id(node.func.value))
            self._add(ENV_READ, node)
            return True
        return False

    def _deserialize(self, node, name) -> bool:
        if name in DESERIALIZE or (name in YAML_LOAD and not self._safe_yaml_loader(node)):
            self._add(UNSAFE_DESERIALIZE, node)
            return True
        return False

    def _safe_yaml_loader(self, node) -> bool:
        loader = _keyword(node, "Loader")
        if loader is None and len(node.args) > 1:
            loader = node.args[1]
        name = self.qualname(loader) if loader is not None else None
        return bool(name) and name.rsplit(".", 1)[-1] in SAFE_YAML_LOADERS

    def _subscript(self, node: ast.Subscript) -> None:
        if self.qualname(node.value) in ENVIRON:
            self.environ_used.add(id(node.value))
            self._add(ENV_READ, node)

    def _compare(self, node: ast.Compare) -> None:
        for operand in node.comparators:
            if self.qualname(operand) in ENVIRON:
                self.environ_used.add(id(operand))

    def _whole_environ(self, nodes) -> None:
        for node in nodes:
            # Uses of one variable (os.environ[...], os.environ.get) were marked as they were judged.
            named = (isinstance(node, ast.Attribute) and node.attr in ("environ", "environb")) or (
                isinstance(node, ast.Name) and self.names.get(node.id) in ENVIRON)
            if named and id(node) not in self.environ_used and self.qualname(node) in ENVIRON:
                self._add(ENV_DUMP, node)

    def _decodes(self, code) -> bool:
        for count, inner in enumerate(ast.walk(code)):
            if count > MAX_ARG_NODES:
                return False
            if isinstance(inner, ast.Call):
                func = inner.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in DECODERS:
                    return True
        return False

    def _add(self, chosen: Rule, node, confidence: float | None = None) -> None:
        line = getattr(node, "lineno", None)
        text = self.lines[line - 1] if line and 0 < line <= len(self.lines) else ""
        self.findings.append(Finding(
            rule_id=chosen.rule_id, severity=chosen.severity, category=chosen.category, title=chosen.title,
            description=chosen.description, recommendation=chosen.recommendation, line=line, cwe=chosen.cwe,
            snippet=snippet_of(text), confidence=chosen.confidence if confidence is None else confidence,
            capability=chosen.capability,
        ))


def _first_arg(node: ast.Call, keyword: str):
    if node.args and not isinstance(node.args[0], ast.Starred):
        return node.args[0]
    return _keyword(node, keyword)


def _keyword(node: ast.Call, name: str):
    for keyword in node.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _shell_true(node: ast.Call) -> bool:
    shell = _keyword(node, "shell")
    if shell is None:
        return False
    return not (isinstance(shell, ast.Constant) and not shell.value)


def _is_text(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))


def _text_of(node) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and _is_text(node.values[0]):
        return node.values[0].value  # f"/etc/{name}": the fixed start still tells where it writes
    return None


def _strings_in(node) -> str:
    """The string literals of an expression, joined: os.path.join("~", ".ssh") still names ~/.ssh."""
    if node is None:
        return ""
    parts = []
    for count, inner in enumerate(ast.walk(node)):
        if count > MAX_ARG_NODES:
            break
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            parts.append(inner.value)
    return "/".join(parts)


def _constant_command(node) -> bool:
    """A command that is a string literal or a list/tuple of string literals."""
    if node is None or _is_text(node):
        return True
    if isinstance(node, (ast.List, ast.Tuple)):
        return all(_is_text(element) for element in node.elts)
    return False


def _opens_for_writing(node: ast.Call, name: str) -> bool:
    if name == "os.open":
        flags = _keyword(node, "flags") or (node.args[1] if len(node.args) > 1 else None)
        text = ast.unparse(flags) if flags is not None and _small(flags) else ""
        return any(flag in text for flag in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"))
    mode = _keyword(node, "mode") or (node.args[1] if len(node.args) > 1 else None)
    if mode is None:
        return False
    if not _is_text(mode):
        return True  # a mode chosen at run time may write
    value = mode.value if isinstance(mode.value, str) else mode.value.decode(errors="replace")
    return any(flag in value for flag in "wax+")


def _path_like(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith("path()") or any(word in lowered for word in ("path", "file", "dir", "dest", "target"))


def _small(node) -> bool:
    return sum(1 for _, _ in zip(range(MAX_ARG_NODES + 1), ast.walk(node), strict=False)) <= MAX_ARG_NODES


def analyse(tree: ast.AST, lines: list[str]) -> tuple[list[Finding], int]:
    """Our findings, and how many syntax nodes the code has."""
    rules = PythonRules(tree, lines)
    return rules.run(), rules.node_count
