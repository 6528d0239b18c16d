"""prune_contexts, import_tekton_contexts and sync_engram_contexts."""

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from contexts.models import Context, ContextSummary, EngramOutbox, Message
from tests.contexts.conftest import FakeEngram, add_turns


def _age(context_id: str, days: int) -> None:
    Context.objects.filter(context_id=context_id).update(
        updated_at=timezone.now() - timedelta(days=days)
    )


def test_prune_deletes_only_old_contexts(db: None) -> None:
    add_turns("ergon:old", [("user", "a"), ("assistant", "b")])
    add_turns("ergon:new", [("user", "c")])
    _age("ergon:old", 40)
    out = io.StringIO()

    call_command("prune_contexts", "--older-than", "30d", stdout=out)

    assert list(Context.objects.values_list("context_id", flat=True)) == ["ergon:new"]
    assert Message.objects.count() == 1
    assert "Deleted 1 context(s) with 2 message(s)" in out.getvalue()


def test_prune_dry_run_deletes_nothing(db: None) -> None:
    add_turns("ergon:old", [("user", "a")])
    _age("ergon:old", 40)
    out = io.StringIO()

    call_command("prune_contexts", "--older-than", "30d", "--dry-run", stdout=out)

    assert Context.objects.count() == 1
    assert "Would delete 1 context(s)" in out.getvalue()


def test_prune_by_component(db: None) -> None:
    add_turns("ergon:old", [("user", "a")])
    add_turns("telos:old", [("user", "a")])
    _age("ergon:old", 40)
    _age("telos:old", 40)

    call_command(
        "prune_contexts", "--older-than", "2w", "--component", "telos", stdout=io.StringIO()
    )

    assert list(Context.objects.values_list("context_id", flat=True)) == ["ergon:old"]


def test_prune_rejects_a_bad_duration(db: None) -> None:
    add_turns("ergon:old", [("user", "a")])

    with pytest.raises(CommandError, match="30d"):
        call_command("prune_contexts", "--older-than", "thirty", stdout=io.StringIO())

    assert Context.objects.count() == 1


TEKTON_FILE = {
    "context_id": "ergon:imported",
    "created_at": "2025-01-02T03:04:05Z",
    "updated_at": 1735790000.5,
    "metadata": {"component": "ergon", "owner": "casey"},
    "summaries": [{"content": "They discussed the roadmap."}],
    "archived_messages": [
        {"id": "a1", "role": "user", "content": "What is on the roadmap?", "timestamp": 1735700000},
        {
            "id": "a2",
            "role": "assistant",
            "content": "Search and summaries.",
            "timestamp": 1735700001,
        },
    ],
    "messages": [
        {
            "id": "m1",
            "role": "user",
            "content": "And after that?",
            "timestamp": "2025-01-02T03:10:00Z",
            "metadata": {"client": "hephaestus"},
        },
        {
            "id": "m2",
            "role": "assistant",
            "content": "Engram mirroring.",
            "timestamp": "2025-01-02T03:10:05Z",
        },
        {"id": "bad", "role": "function", "content": "ignored"},
    ],
}


def _write(tmp_path: Path, data: dict[str, object], name: str = "ctx.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_import_tekton_context(db: None, tmp_path: Path) -> None:
    out = io.StringIO()

    call_command("import_tekton_contexts", str(_write(tmp_path, TEKTON_FILE)), stdout=out)

    context = Context.objects.get()
    assert context.context_id == "ergon:imported"
    assert context.component == "ergon"
    assert context.created_at.isoformat() == "2025-01-02T03:04:05+00:00"
    assert (context.message_count, context.archived_message_count, context.summary_count) == (
        4,
        2,
        1,
    )
    rows = list(Message.objects.values_list("seq", "role", "content", "archived"))
    assert rows == [
        (0, "user", "What is on the roadmap?", True),
        (1, "assistant", "Search and summaries.", True),
        (2, "user", "And after that?", False),
        (3, "assistant", "Engram mirroring.", False),
    ]
    assert Message.objects.get(seq=2).metadata == {"client": "hephaestus", "tekton_id": "m1"}
    summary = ContextSummary.objects.get()
    assert (summary.content, summary.source, summary.first_seq, summary.last_seq) == (
        "They discussed the roadmap.",
        "imported",
        0,
        1,
    )
    assert context.latest_summary_id == summary.pk
    assert "Imported 1 context(s): 2 new message(s), 2 new archived message(s)" in out.getvalue()


def test_import_is_idempotent_and_adds_only_new_messages(db: None, tmp_path: Path) -> None:
    path = _write(tmp_path, TEKTON_FILE)
    call_command("import_tekton_contexts", str(path), stdout=io.StringIO())
    call_command("import_tekton_contexts", str(path), stdout=io.StringIO())
    newer = {
        **TEKTON_FILE,
        "messages": [
            *TEKTON_FILE["messages"],  # type: ignore[misc]
            {"id": "m3", "role": "user", "content": "Great."},
        ],
    }

    call_command("import_tekton_contexts", str(_write(tmp_path, newer)), stdout=io.StringIO())

    assert Message.objects.count() == 5
    assert Message.objects.get(seq=4).content == "Great."
    assert ContextSummary.objects.count() == 1
    assert Context.objects.get().message_count == 5


def test_import_a_directory_skips_broken_files(db: None, tmp_path: Path) -> None:
    _write(tmp_path, TEKTON_FILE, "a.json")
    (tmp_path / "b.json").write_text("{not json")
    _write(tmp_path, {"messages": []}, "c.json")
    err = io.StringIO()

    call_command("import_tekton_contexts", str(tmp_path), stdout=io.StringIO(), stderr=err)

    assert Context.objects.count() == 1
    assert "b.json: skipped" in err.getvalue()
    assert "c.json: skipped" in err.getvalue()


def test_import_missing_path_is_an_error(db: None, tmp_path: Path) -> None:
    with pytest.raises(CommandError):
        call_command("import_tekton_contexts", str(tmp_path / "nope"), stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_sync_engram_sends_every_context(
    fake_engram: FakeEngram, settings: pytest.FixtureRequest
) -> None:
    add_turns("ergon:a", [("user", "hello")])
    add_turns("with/slash", [("user", "x")])
    settings.ENGRAM_URL = fake_engram.url  # type: ignore[attr-defined]
    out = io.StringIO()

    call_command("sync_engram_contexts", stdout=out)

    assert sorted(fake_engram.stored) == ["ergon:a", "with/slash"]
    assert fake_engram.stored["ergon:a"]["messages"][0]["content"] == "hello"
    assert EngramOutbox.objects.exists() is False
    assert "Queued 2 context(s); sent 2, 0 failed" in out.getvalue()


def test_sync_engram_without_url_is_an_error(db: None) -> None:
    with pytest.raises(CommandError, match="ENGRAM_URL"):
        call_command("sync_engram_contexts", stdout=io.StringIO())
