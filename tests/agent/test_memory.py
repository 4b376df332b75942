import pytest

from app.agent.memory import NoMemory, Scope, entry_text, open_memory, search_terms
from app.core.db import connection


@pytest.fixture
def memory(app):
    with connection():
        yield open_memory("sqlite")


def save(memory, text, session_id="sess_a", user_id="u1", seq=2):
    memory.save(session_id, user_id, seq, text)


def contents(found):
    return [item.content for item in found]


def test_the_most_relevant_entries_come_first(memory):
    save(memory, "Quantum physics lecture: quantum entanglement and quantum states", seq=2)
    save(memory, "Physics homework due on Friday", seq=4)
    save(memory, "Cooking pasta with garlic", seq=6)
    found = memory.recall("tell me about quantum physics", Scope("sess_b", "u1"), 5)
    assert contents(found)[0].startswith("Quantum physics lecture")
    assert "Cooking pasta with garlic" not in contents(found)
    assert len(found) == 2
    assert found[0].session_id == "sess_a" and found[0].created_at is not None


def test_recall_is_bounded_by_top_k(memory):
    for n in range(6):
        save(memory, f"note {n} about gardening tomatoes", seq=2 * n + 2)
    assert len(memory.recall("gardening", Scope("sess_x", "u1"), 3)) == 3
    assert memory.recall("gardening", Scope("sess_x", "u1"), 0) == []
    assert memory.count() == 6


def test_one_users_memories_never_reach_another_user(memory):
    save(memory, "my secret password hint is the blue dog", user_id="alice")
    save(memory, "the blue dog is friendly", user_id="bob", session_id="sess_bob")
    assert contents(memory.recall("blue dog", Scope("sess_z", "alice"), 5)) == [
        "my secret password hint is the blue dog"]
    # Without a user id, a session recalls only its own turns.
    save(memory, "anonymous blue dog chat", user_id=None, session_id="sess_anon")
    assert contents(memory.recall("blue dog", Scope("sess_anon", None), 5)) == ["anonymous blue dog chat"]
    assert memory.recall("blue dog", Scope("sess_other", None), 5) == []


def test_a_scope_without_a_session_recalls_by_user_or_not_at_all(memory):
    save(memory, "the blue dog again", user_id="alice", session_id="sess_a")
    save(memory, "an anonymous blue dog", user_id=None, session_id="sess_anon")
    assert contents(memory.recall("blue dog", Scope(user_id="alice", skip_from_seq=0), 5)) == ["the blue dog again"]
    assert memory.recall("blue dog", Scope(), 5) == []


def test_turns_already_in_the_history_are_not_recalled(memory):
    save(memory, "old turn about sailing boats", session_id="sess_a", seq=2)
    save(memory, "recent turn about sailing boats", session_id="sess_a", seq=40)
    save(memory, "other session about sailing boats", session_id="sess_b", seq=50)
    found = memory.recall("sailing", Scope("sess_a", "u1", skip_from_seq=30), 5)
    assert sorted(contents(found)) == ["old turn about sailing boats", "other session about sailing boats"]


@pytest.mark.parametrize("query", ['"*:()|&!\'', "AND OR NOT NEAR", "   ", "a", "東京 café 1e10 v2.0 x-y"])
def test_search_syntax_in_the_message_is_harmless(memory, query):
    save(memory, "AND OR NOT NEAR are words too")
    memory.recall(query, Scope("sess_a", "u1"), 5)  # must not raise


def test_search_terms():
    assert search_terms('Hello, "world"! hello_there x 東京') == ["hello", "world", "there", "東京"]
    assert len(search_terms(" ".join(f"w{n}" for n in range(100)))) == 32


def test_no_memory_saves_and_recalls_nothing(app):
    memory = open_memory("none")
    assert isinstance(memory, NoMemory)
    with connection():
        memory.save("sess_a", "u1", 2, "something to remember")
        assert memory.recall("something", Scope("sess_a", "u1"), 5) == []
        assert memory.count() == 0
        assert open_memory("sqlite").count() == 0


def test_entry_text_is_bounded():
    text = entry_text("q" * 10_000, "a")
    assert text.startswith("User: qqq") and text.endswith("\nAssistant: a")
    assert len(text) < 4_100
