"""Each rule fires on a minimal example and stays quiet on its safe variant; scores, merging, detection."""

from pathlib import Path

import pytest

from app.review.analysis import (
    PERMISSIONS,
    SEVERITIES,
    AnalysisInputError,
    analyze,
    check_source,
    detect_language,
    risk_score,
)

CLEAN = Path(__file__).parent / "clean"
EVERYTHING = list(PERMISSIONS)


def rules(source, language=None, permissions=EVERYTHING):
    return {f["rule_id"] for f in analyze(source, language, permissions)["findings"]}


def finding(source, rule_id, language=None, permissions=EVERYTHING):
    found = [f for f in analyze(source, language, permissions)["findings"] if f["rule_id"] == rule_id]
    assert found, f"{rule_id} did not fire"
    return found[0]


# (rule, language, code that must fire the rule, safe variant that must not)
PYTHON_CASES = [
    ("py-shell-injection", "import subprocess\ndef f(cmd):\n    subprocess.run(cmd, shell=True)\n",
     "import subprocess\ndef f(name):\n    subprocess.run(['ls', '--', name])\n"),
    ("py-shell-injection", "import os\ndef f(host):\n    os.system('ping ' + host)\n",
     "import os\ndef f(host):\n    os.path.exists(host)\n"),
    ("py-shell", "import os\nos.system('uptime')\n", "import os\nos.getpid()\n"),
    ("py-process-computed", "import subprocess\ndef f(tool):\n    subprocess.run([tool, '-v'])\n",
     "import subprocess\nsubprocess.run(['git', 'status'])\n"),
    ("py-eval", "def f(user_input):\n    return eval(user_input)\n",
     "import ast\ndef f(user_input):\n    return ast.literal_eval(user_input)\n"),
    ("py-eval", "def f(code):\n    exec(code)\n", "def f(code):\n    print(code)\n"),
    ("py-exec-encoded", "import base64\nexec(base64.b64decode('cHJpbnQoMSk='))\n",
     "import base64\nprint(base64.b64decode('cHJpbnQoMSk='))\n"),
    ("py-compile", "def f(src):\n    return compile(src, 'x', 'exec')\n", "import re\nre.compile('a+')\n"),
    ("py-dynamic-import", "import importlib\ndef f(name):\n    return importlib.import_module(name)\n",
     "import importlib\nimportlib.import_module('json')\n"),
    ("py-dynamic-import", "def f(name):\n    return __import__(name)\n", "import json\n"),
    ("py-network-computed-url", "import requests\ndef f(url):\n    requests.get(url, timeout=5)\n",
     "import requests\nrequests.get('https://api.example.org/v1', timeout=5)\n"),
    ("py-network", "import socket\nsocket.create_connection(('example.org', 80))\n",
     "import socket\nsocket.gethostname()\n"),
    ("py-network", "from urllib.request import urlopen\nurlopen('https://example.org/')\n",
     "from urllib.parse import quote\nquote('a b')\n"),
    ("py-network", "import http.client\nhttp.client.HTTPSConnection('example.org')\n", "import http\n"),
    ("py-file-write", "def f(path, data):\n    with open(path, 'w') as out:\n        out.write(data)\n",
     "import tempfile, os\ndef f(data):\n    d = tempfile.mkdtemp()\n    with open(os.path.join(d, 'x'), 'w') as out:\n"
     "        out.write(data)\n"),
    ("py-file-write", "import shutil\ndef f(p):\n    shutil.rmtree(p)\n", "import shutil\nshutil.which('git')\n"),
    ("py-sensitive-write", "open('/etc/cron.d/job', 'a').write('* * * * * x')\n", "open('/tmp/job', 'a').write('x')\n"),
    ("py-sensitive-read", "import os\nkey = open(os.path.expanduser('~/.ssh/id_rsa')).read()\n",
     "import os\nkey = open(os.path.expanduser('~/notes.txt')).read()\n"),
    ("py-env-dump", "import os, json\nprint(json.dumps(dict(os.environ)))\n",
     "import os\nprint(os.environ.get('HOME'))\n"),
    ("py-env-read", "import os\nos.getenv('HOME')\n", "import os\nos.getcwd()\n"),
    ("py-unsafe-deserialization", "import pickle\ndef f(blob):\n    return pickle.loads(blob)\n",
     "import json\ndef f(blob):\n    return json.loads(blob)\n"),
    ("py-unsafe-deserialization", "import yaml\ndef f(text):\n    return yaml.load(text)\n",
     "import yaml\ndef f(text):\n    return yaml.load(text, Loader=yaml.SafeLoader)\n"),
    ("py-unsafe-deserialization", "import marshal\nmarshal.loads(b'x')\n", "import json\njson.loads('1')\n"),
    ("py-mktemp", "import tempfile\nname = tempfile.mktemp()\n", "import tempfile\nfd, name = tempfile.mkstemp()\n"),
]

SCRIPT_CASES = [
    ("js-shell-injection", "const cp = require('child_process');\ncp.exec(`ls ${dir}`);\n",
     "const cp = require('child_process');\ncp.execFile('ls', ['-l', dir]);\n"),
    ("js-shell-injection", "import { execSync } from 'node:child_process';\nexecSync('git log ' + ref);\n",
     "import { execFileSync } from 'node:child_process';\nexecFileSync('git', ['log', ref]);\n"),
    ("js-shell-injection", "const { spawn } = require('child_process');\nspawn(cmd, { shell: true });\n",
     "const { spawn } = require('child_process');\nspawn('ls', ['-l'], { shell: false });\n"),
    ("js-shell", "const cp = require('child_process');\ncp.execSync('uptime');\n",
     "const os = require('os');\nos.uptime();\n"),
    ("js-process-computed", "const cp = require('child_process');\ncp.spawn(program, []);\n",
     "const cp = require('child_process');\ncp.spawn('ls', []);\n"),
    ("js-eval", "function run(userInput) { return eval(userInput); }\n",
     "function run(userInput) { return JSON.parse(userInput); }\n"),
    ("js-eval", "const f = new Function('a', body);\n", "const f = function (a) { return a; };\n"),
    ("js-eval", "const vm = require('vm');\nvm.runInNewContext(code, {});\n", "const vm = require('vm');\n"),
    ("js-eval-encoded", "eval(atob(payload));\n", "console.log(atob(payload));\n"),
    ("js-timer-string", "setTimeout('doIt()', 10);\n", "setTimeout(doIt, 10);\n"),
    ("js-file-write", "const fs = require('fs');\nfs.writeFileSync(target, data);\n",
     "const fs = require('fs');\nconst os = require('os');\nfs.writeFileSync(os.tmpdir() + '/x', data);\n"),
    ("js-file-write", "import { writeFile } from 'fs/promises';\nawait writeFile(name, data);\n",
     "import { readFile } from 'fs/promises';\nawait readFile(name, 'utf8');\n"),
    ("js-sensitive-read", "const fs = require('fs');\nfs.readFileSync(home + '/.ssh/id_rsa');\n",
     "const fs = require('fs');\nfs.readFileSync(home + '/notes.txt');\n"),
    ("js-network-computed-url", "async function f(url) { return fetch(url); }\n",
     "async function f() { return fetch('https://api.example.org/v1'); }\n"),
    ("js-network-computed-url", "const axios = require('axios');\naxios.post(target, data);\n",
     "const axios = require('axios');\naxios.post('https://api.example.org/items', data);\n"),
    ("js-network-computed-url", "const https = require('https');\nhttps.get(address);\n",
     "const API = 'https://api.example.org';\nconst https = require('https');\nhttps.get(API);\n"),
    ("js-env-dump", "send(JSON.stringify(process.env));\n", "const token = process.env.API_TOKEN;\n"),
    ("js-env-read", "const token = process.env.API_TOKEN;\n", "const token = config.apiToken;\n"),
    ("js-dynamic-require", "const plugin = require(name);\n", "const path = require('path');\n"),
    ("js-dynamic-require", "const m = await import(moduleName);\n", "const m = await import('./local.js');\n"),
]

SECRET_CASES = [
    ("secret-aws-access-key", 'key = "AKIAQ3EGRZ5WJ7BXN2LT"\n', 'key = "AKIAIOSFODNN7EXAMPLE"\n'),
    ("secret-github-token", 'token = "ghp_' + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5" + '"\n', 'token = "ghp_short"\n'),
    ("secret-github-token", 'token = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"\n',
     'token = "github_pat_"\n'),
    ("secret-private-key", 'KEY = """-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"""\n',
     'KEY = """-----BEGIN PUBLIC KEY-----\nMIIBIj\n-----END PUBLIC KEY-----"""\n'),
    ("secret-slack-token", 'SLACK = "xoxb-' + "1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx" + '"\n',
     'SLACK = "xoxb"\n'),
    ("secret-high-entropy", 'client_secret = "q8Zt2LmV9xRb4NcW7pKd1sYf"\n',
     'client_secret = os.environ["CLIENT_SECRET"]\n'),
    ("secret-high-entropy", 'const apiKey = "Zr7Qm2Xv9Lk4Tb8Nw3Pd6Hs1";\n',
     'const apiKeyHeader = "X-Api-Key-Header-Name";\n'),
]


def case_ids(cases):
    return [f"{case[0]}-{index}" for index, case in enumerate(cases)]


@pytest.mark.parametrize("rule_id,unsafe,safe", PYTHON_CASES, ids=case_ids(PYTHON_CASES))
def test_python_rules_fire_on_unsafe_code_only(rule_id, unsafe, safe):
    assert rule_id in rules(unsafe, "python")
    assert rule_id not in rules(safe, "python")


@pytest.mark.parametrize("rule_id,unsafe,safe", SCRIPT_CASES, ids=case_ids(SCRIPT_CASES))
@pytest.mark.parametrize("language", ["javascript", "typescript"])
def test_script_rules_fire_on_unsafe_code_only(language, rule_id, unsafe, safe):
    assert rule_id in rules(unsafe, language)
    assert rule_id not in rules(safe, language)


@pytest.mark.parametrize("rule_id,unsafe,safe", SECRET_CASES, ids=case_ids(SECRET_CASES))
def test_secret_rules_fire_on_real_looking_secrets_only(rule_id, unsafe, safe):
    language = "javascript" if unsafe.startswith("const") else "python"
    found = finding(unsafe, rule_id, language)
    assert found["severity"] in ("high", "critical") and found["cwe"] == "CWE-798"
    assert rule_id not in rules(safe, language)


def test_a_secret_never_appears_whole_in_its_finding():
    secret = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    result = analyze(f'TOKEN = "{secret}"\n', "python", [])
    assert secret not in repr(result)
    assert "[redacted]" in finding(f'TOKEN = "{secret}"\n', "secret-github-token")["snippet"]


def test_shell_true_and_eval_of_input_are_high_findings():
    source = ("import subprocess\n\n"
              "def run(cmd, user_input):\n"
              "    subprocess.run(cmd, shell=True)\n"
              "    return eval(user_input)\n")
    result = analyze(source, "python", ["process"])
    by_line = {f["line"]: f for f in result["findings"] if f["severity"] in ("high", "critical")}
    assert by_line[4]["category"] == "command_injection" and by_line[4]["cwe"] == "CWE-78"
    assert by_line[5]["category"] == "code_injection" and by_line[5]["cwe"] == "CWE-95"
    assert by_line[4]["location"] == "line 4" and by_line[4]["snippet"] == "subprocess.run(cmd, shell=True)"
    assert result["risk_score"] >= 60
    assert result["recommendations"] and all(isinstance(text, str) for text in result["recommendations"])


def test_every_finding_has_the_documented_shape():
    result = analyze("import os, pickle\nos.system(x)\npickle.loads(y)\n", None, [])
    assert set(result) == {"language", "findings", "risk_score", "recommendations", "stats"}
    assert result["findings"]
    for item in result["findings"]:
        assert set(item) == {"finding_id", "rule_id", "severity", "category", "title", "description", "location",
                             "line", "recommendation", "cwe", "snippet", "confidence"}
        assert item["severity"] in SEVERITIES and 0 <= item["confidence"] <= 1
        assert item["cwe"] is None or item["cwe"].startswith("CWE-")
    ids = [item["finding_id"] for item in result["findings"]]
    assert len(set(ids)) == len(ids)
    assert ids == [item["finding_id"] for item in analyze("import os, pickle\nos.system(x)\npickle.loads(y)\n",
                                                          None, [])["findings"]]


def test_aliases_do_not_hide_calls():
    assert "py-shell-injection" in rules("import subprocess as sp\nsp.Popen(c, shell=True)\n", "python")
    assert "py-shell-injection" in rules("from os import system as run\nrun(c)\n", "python")
    assert "py-unsafe-deserialization" in rules("from pickle import loads\nloads(b)\n", "python")
    assert "js-shell-injection" in rules("import * as cp from 'child_process';\ncp.exec(c);\n", "javascript")
    assert "js-shell-injection" in rules("require('child_process').exec(c);\n", "javascript")
    assert "js-shell-injection" in rules("const { exec: run } = require('child_process');\nrun(c);\n", "javascript")


def test_nosec_comments_do_not_silence_anything():
    source = "import subprocess\nsubprocess.call(cmd, shell=True)  # nosec\n"
    assert "py-shell-injection" in rules(source, "python")


def test_bandit_findings_merge_with_ours_without_duplicates():
    source = "import subprocess\nimport hashlib\nsubprocess.run(cmd, shell=True)\nhashlib.md5(data).hexdigest()\n"
    result = analyze(source, "python", ["process"])
    on_line_3 = [f for f in result["findings"] if f["line"] == 3]
    assert [f["rule_id"] for f in on_line_3] == ["py-shell-injection"]  # bandit's B602 merged into ours
    assert any(f["rule_id"].startswith("bandit-B324") for f in result["findings"])  # bandit alone saw md5
    assert result["stats"]["bandit"]["issues"] >= 2


def test_undeclared_capabilities_are_findings_of_their_own():
    source = ("import os, subprocess, requests\n"
              "subprocess.run(['ls'])\n"
              "requests.get('https://example.org/', timeout=3)\n"
              "os.getenv('HOME')\n"
              "open(path, 'w').write('x')\n")
    undeclared = {f["rule_id"]: f for f in analyze(source, "python", [])["findings"]
                  if f["category"] == "undeclared_capability"}
    assert set(undeclared) == {"undeclared-process", "undeclared-network", "undeclared-environment",
                               "undeclared-filesystem-write"}
    assert undeclared["undeclared-process"]["severity"] == "high"
    assert undeclared["undeclared-network"]["line"] == 3
    declared = ["process", "network:example.org", "environment", "filesystem:write"]
    assert not [f for f in analyze(source, "python", declared)["findings"] if f["category"] == "undeclared_capability"]
    # Reading needs filesystem or filesystem:read; writing is not covered by read alone.
    reads = analyze("open(p, 'w')\nopen(q).read()\n", "python", ["filesystem:read"])["findings"]
    assert {f["rule_id"] for f in reads if f["category"] == "undeclared_capability"} == {"undeclared-filesystem-write"}


def test_unknown_permissions_are_reported_as_information():
    found = finding("x = 1\n", "unknown-permission", "python", ["network", "teleport"])
    assert found["severity"] == "info" and "teleport" in found["description"]


def test_the_risk_score_rises_with_severity_and_count():
    def of(*severities, confidence=1.0):
        return risk_score([{"severity": s, "confidence": confidence} for s in severities])

    assert of() == 0 and of("info", "info") == 0
    assert of("low") < of("medium") < of("high") < of("critical")
    assert of("medium") < of("medium", "medium") < of("medium", "medium", "medium")
    assert of("critical") == 70 and of("high") == 40 and of("medium") == 12 and of("low") == 3
    assert of("high", "high") == 64  # 1 - 0.6 * 0.6
    assert of("high", confidence=0.5) == 20
    assert of(*["critical"] * 50) == 100


def test_the_reported_score_is_the_formula_over_the_reported_findings():
    result = analyze("import pickle, os\npickle.loads(a)\nos.system(b)\nopen(c, 'w')\n", "python", ["process"])
    assert result["risk_score"] == risk_score(result["findings"])


@pytest.mark.parametrize("source,expected", [
    ("import os\n\ndef main():\n    print(os.getcwd())\n", "python"),
    ("class Tool:\n    def run(self, x):\n        return None\n", "python"),
    ("const fs = require('fs');\nfunction main() { console.log(fs); }\n", "javascript"),
    ("import x from 'y';\nexport const f = (a) => a * 2;\n", "javascript"),
    ("interface Args { name: string }\nexport function run(a: Args): void {}\n", "typescript"),
    ("import type { X } from './x';\nconst n: number = 1;\n", "typescript"),
])
def test_language_detection(source, expected):
    assert detect_language(source) == expected
    assert analyze(source, None, [])["language"] == expected


def test_a_given_language_overrides_detection_and_is_checked():
    assert analyze("const a = 1;\n", "TypeScript", [])["language"] == "typescript"
    with pytest.raises(AnalysisInputError, match="unsupported language"):
        analyze("x = 1\n", "ruby", [])


def test_unparsable_python_is_a_finding_not_an_error():
    result = analyze("def broken(:\n    pass\n", "python", [])
    assert [f["rule_id"] for f in result["findings"]] == ["py-syntax-error"]
    assert result["findings"][0]["severity"] == "high" and result["stats"]["parsed"] is False


def test_partly_invalid_javascript_is_still_checked():
    result = analyze("let x = ;\neval(userInput);\n", "javascript", [])
    assert {"js-parse-errors", "js-eval"} <= {f["rule_id"] for f in result["findings"]}


def test_check_source_accepts_text_and_utf8_bytes():
    assert check_source("x = 1\n") == "x = 1\n"
    assert check_source("x = 'é'\n".encode()) == "x = 'é'\n"
    with pytest.raises(AnalysisInputError, match="empty"):
        check_source("  \n")


@pytest.mark.parametrize("path", sorted(CLEAN.iterdir()), ids=lambda p: p.name)
def test_clean_tools_have_no_high_or_critical_findings(path):
    source = path.read_text(encoding="utf-8")
    declared = [name.strip() for name in source.splitlines()[0].split("permissions:", 1)[1].split(",") if name.strip()]
    result = analyze(source, None, declared)
    serious = [(f["rule_id"], f["line"]) for f in result["findings"] if f["severity"] in ("high", "critical")]
    assert serious == []
    assert result["risk_score"] < 30
    assert result["language"] == {".py": "python", ".js": "javascript", ".ts": "typescript"}[path.suffix]


def test_the_clean_corpus_is_large_enough_to_mean_something():
    assert len([p for p in CLEAN.iterdir() if p.suffix in (".py", ".js", ".ts")]) >= 9
