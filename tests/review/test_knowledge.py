"""The security knowledge base: shipped entries, imports, and full-text search on both databases."""

import json

import pytest

from app.core.db import connection
from app.review import knowledge
from app.review.analysis import js_rules, python_rules, schema
from app.review.knowledge.models import KnowledgeEntry

FINDING = ["Shell command built at run time",
           "A shell runs a command computed at run time: any input that reaches it can run arbitrary commands.",
           "command_injection", "CWE-78"]


@pytest.fixture
def kb(app):
    with connection():
        knowledge.load_builtin()
        yield


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_builtin_entries_load_once_and_stay_in_step(app):
    with connection():
        first = knowledge.load_builtin()
        assert first["added"] >= 30
        again = knowledge.load_builtin()
        assert again == {"added": 0, "updated": 0, "unchanged": first["added"], "removed": 0}
        stale = KnowledgeEntry.get(KnowledgeEntry.key == "kb-eval")
        KnowledgeEntry.update(title="Old title").where(KnowledgeEntry.id == stale.id).execute()
        KnowledgeEntry.create(key="kb-withdrawn", source=knowledge.BUILTIN_SOURCE, category="analysis",
                              title="Withdrawn", insight="No longer shipped.", keywords="", created_at=stale.created_at,
                              updated_at=stale.updated_at)
        synced = knowledge.load_builtin()
        assert (synced["updated"], synced["removed"]) == (1, 1)
        assert KnowledgeEntry.get(KnowledgeEntry.key == "kb-eval").title == "Evaluating input as code"
        assert not KnowledgeEntry.select().where(KnowledgeEntry.key == "kb-withdrawn").exists()


def test_every_category_the_rules_report_has_guidance(kb):
    rule_categories = {value.category for module in (python_rules, js_rules) for value in vars(module).values()
                       if isinstance(value, python_rules.Rule)}
    rule_categories |= {pattern.category for pattern in schema.PATTERNS} | set(schema.SCHEMA_CATEGORIES)
    rule_categories |= {"hardcoded_secret", "obfuscation", "undeclared_capability", "analysis"}
    shipped = {row.category for row in KnowledgeEntry.select(KnowledgeEntry.category)}
    assert rule_categories - shipped == set()


def test_a_finding_finds_the_guidance_for_its_weakness_first(kb):
    found = knowledge.search(FINDING, 3)
    assert len(found) == 3
    assert found[0]["cwe"] == "CWE-78" and found[0]["category"] == "command_injection"
    assert found[0]["knowledge_source"] == "security_kb"
    assert found[0]["insight"].startswith("Shell command injection:")
    scores = [item["relevance_score"] for item in found]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert set(found[0]) == {"knowledge_source", "relevance_score", "insight", "cwe", "category"}


@pytest.mark.parametrize("texts,cwe", [
    (["Unsafe deserialization", "Data is deserialized with pickle", "CWE-502"], "CWE-502"),
    (["Hard-coded credential", "The source contains an AWS access key id."], "CWE-798"),
    (["Prompt injection: instruction override", "The text tells the model to ignore its instructions."], "CWE-1427"),
    (["Race-prone temporary file name tempfile.mktemp"], "CWE-377"),
    ("Request to a computed address: SSRF to internal services", "CWE-918"),
])
def test_search_matches_findings_to_their_entries(kb, texts, cwe):
    assert knowledge.search(texts, 1)[0]["cwe"] == cwe


def test_a_closer_match_scores_higher(kb):
    close = knowledge.search(["pickle deserialization unsafe load yaml marshal"], 1)[0]
    loose = knowledge.search(["pickle"], 1)[0]
    assert close["cwe"] == loose["cwe"] == "CWE-502"
    assert close["relevance_score"] > loose["relevance_score"]


@pytest.mark.parametrize("texts", [[], "", ["the and of"], ['"NEAR( * -) OR AND ^'], ["zzqx-unmatched"]])
def test_queries_without_usable_words_find_nothing_and_never_fail(kb, texts):
    assert knowledge.search(texts, 3) == []


def test_limit_bounds_the_answer(kb):
    assert len(knowledge.search(FINDING, 1)) == 1
    assert knowledge.search(FINDING, 0) == []


def test_a_json_file_imports_and_reimports_by_key(kb, tmp_path):
    entries = [{"key": "acme-ldap", "category": "ldap_injection", "cwe": "CWE-90", "title": "LDAP injection",
                "insight": "Escape distinguished names and filters built from input.",
                "keywords": ["ldap", "filter", "directory"]}]
    path = write(tmp_path, "acme.json", json.dumps({"source": "acme_kb", "entries": entries}))
    with connection():
        assert knowledge.import_file(path) == {"added": 1, "updated": 0, "unchanged": 0}
        found = knowledge.search(["LDAP filter built from user input"], 1)[0]
        assert (found["knowledge_source"], found["cwe"]) == ("acme_kb", "CWE-90")
        entries[0]["insight"] = "Escape filters with the library's escaping function."
        path.write_text(json.dumps({"source": "acme_kb", "entries": entries}))
        assert knowledge.import_file(path) == {"added": 0, "updated": 1, "unchanged": 0}
        assert "escaping function" in knowledge.search(["ldap"], 1)[0]["insight"]


def test_a_toml_file_imports_with_progress(kb, tmp_path):
    body = "".join(
        f'[[entries]]\nkey = "bulk-{n}"\ncategory = "bulk_test"\ntitle = "Bulk entry {n}"\n'
        f'insight = "Guidance number {n} about quokkas."\n' for n in range(250))
    path = write(tmp_path, "bulk.toml", 'source = "bulk"\n' + body)
    steps = []
    with connection():
        assert knowledge.import_file(path, steps.append)["added"] == 250
        assert steps == [100, 100, 50]
        assert knowledge.search(["quokkas"], 5)[0]["knowledge_source"] == "bulk"


@pytest.mark.parametrize("content,reason", [
    ('{"entries": [{"key": "a", "category": "x", "title": "t"}]}', "entry 1: 'insight' is required"),
    ('{"entries": [{"key": "a", "category": "x", "title": "t", "insight": "i", "cwe": "78"}]}', "look like CWE-78"),
    ('{"entries": [{"key": "a b", "category": "x", "title": "t", "insight": "i"}]}', "'key' may hold"),
    ('{"entries": [{"key": "a", "category": "Not Valid", "title": "t", "insight": "i"}]}', "lower-case name"),
    ('{"source": "security_kb", "entries": []}', "reserved"),
    ('{"entries": 5}', "expected a list of entries"),
    ("{not json", "cannot be read"),
])
def test_invalid_files_are_refused_with_where_and_why(app, tmp_path, content, reason):
    path = write(tmp_path, "bad.json", content)
    with connection(), pytest.raises(knowledge.KnowledgeFileError, match=reason):
        knowledge.import_file(path)
    with connection():
        assert KnowledgeEntry.select().count() == 0


def test_the_cli_imports_a_file_with_a_progress_bar(app, tmp_path):
    entries = [{"key": f"cli-{n}", "category": "cli_test", "title": f"CLI entry {n}", "insight": "Wombats."}
               for n in range(3)]
    path = write(tmp_path, "cli.json", json.dumps(entries))
    result = app.test_cli_runner().invoke(args=["review", "kb", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "Importing 3 entries" in result.output and "3 added, 0 updated, 0 unchanged (source cli)" in result.output
    with connection():
        assert knowledge.search(["wombats"], 5)[0]["knowledge_source"] == "cli"
    bad = write(tmp_path, "bad.json", '{"entries": [{}]}')
    failed = app.test_cli_runner().invoke(args=["review", "kb", "import", str(bad)])
    assert failed.exit_code == 1
    assert "Error: entry 1: 'key' is required" in failed.output and "Traceback" not in failed.output


def test_the_cli_loads_the_builtin_entries(app):
    result = app.test_cli_runner().invoke(args=["review", "kb", "load-builtin"])
    assert result.exit_code == 0 and " added, 0 updated, 0 removed" in result.output
    with connection():
        assert KnowledgeEntry.select().count() >= 30
