"""``POST /api/runs/{id}/rollback`` on the fakes: every answer as the OpenAPI document
says (202 while the rollback run works, 200 once it is LIVE, 404, 409), and the
rollback run and the audit record it leaves behind."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.approval import key_fingerprint
from shared.domain.runs import RunState
from shared.http import api
from tests.api.contract import Answer, check
from tests.support.app import text_examples
from tests.support.fakes import Harness, accept, drive

KEY = "the-function-key"


def _rollback(
    h: Harness, run_id: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Answer:
    reply = api.rollback_run(lambda: h.services, run_id, body, headers or {}, {})
    answer = Answer(reply.status, reply.media_type, dict(reply.headers), reply.body)
    check("POST", "/api/runs/{id}/rollback", answer)
    return answer


def _live(h: Harness, name: str, topic: str) -> str:
    run_id = accept(h, name, text_examples(20, topic))
    drive(h, run_id, RunState.LIVE)
    return run_id


@pytest.fixture
def h() -> Harness:
    return Harness().configure(approver_keys={key_fingerprint(KEY): "alice"})


def test_rollback_answers_the_new_run_202_then_200_once_it_is_live(h: Harness) -> None:
    a = _live(h, "a.jsonl", "meeting")
    b = _live(h, "b.jsonl", "lunch")

    answer = _rollback(h, b, b'{"by": "Alice A."}', {"x-functions-key": KEY})

    rollback_id = f"{b}-rb1"
    assert answer.status == 202 and answer.headers["Location"] == f"/api/runs/{rollback_id}"
    assert answer.body["run_id"] == rollback_id and answer.body["state"] != "LIVE"
    assert h.ledger.run(b).rolled_back_by["by"] == "alice"
    assert h.ledger.run(b).rolled_back_by["claimed_by"] == "Alice A."
    # Again while it works: the same run, nothing new.
    again = _rollback(h, b)
    assert again.status == 202 and again.body["run_id"] == rollback_id
    drive(h, rollback_id, RunState.LIVE)
    done = _rollback(h, b)
    assert done.status == 200 and done.body["run_id"] == rollback_id
    assert done.body["state"] == "LIVE" and done.headers["Location"] == f"/api/runs/{rollback_id}"
    assert h.azureml.endpoints["ep-test"].traffic == {rollback_id: 100}
    assert h.ledger.run(rollback_id).model_id == h.ledger.run(a).model_id
    assert KEY not in str(h.ledger.run(b).to_dict())
    # The records show it, as the document says.
    for run_id in (b, rollback_id):
        reply = api.get_run(lambda: h.services, run_id)
        check("GET", "/api/runs/{id}", Answer(reply.status, reply.media_type, {}, reply.body))


def test_rollback_is_409_with_nothing_to_roll_back_to_or_a_run_not_live(h: Harness) -> None:
    a = _live(h, "a.jsonl", "meeting")
    first = _rollback(h, a)
    assert first.status == 409 and first.body["type"] == api.PROBLEM_TYPE + "not-allowed-now"
    assert "first model on this endpoint: nothing to roll back to" in first.body["detail"]
    h.azureml.job_statuses = ("Running",)
    training = accept(h, "b.jsonl", text_examples(20, "lunch"))
    answer = _rollback(h, training)
    assert answer.status == 409 and "only a LIVE run can be rolled back" in answer.body["detail"]
    assert len(h.ledger.runs) == 2


@pytest.mark.parametrize("run_id", ["ft-000000000000-00000000", "../x", "x" * 200])
def test_rollback_is_404_for_an_unknown_run(h: Harness, run_id: str) -> None:
    answer = _rollback(h, run_id)
    assert answer.status == 404 and answer.body["type"] == api.PROBLEM_TYPE + "run-not-found"


@pytest.mark.parametrize(("body", "field"), [(b'{"by": ""}', "by"), (b'{"who": "x"}', "who")])
def test_rollback_bodies_are_checked_before_anything_is_recorded(
    h: Harness, body: bytes, field: str
) -> None:
    _live(h, "a.jsonl", "meeting")
    b = _live(h, "b.jsonl", "lunch")
    answer: Any = _rollback(h, b, body)
    assert answer.status == 400 and field in answer.field_errors()
    assert h.ledger.run(b).rolled_back_by == {} and len(h.ledger.runs) == 2
