"""The event workflow still replays what it ran before a change, and what it runs now.

tests/histories holds histories recorded by earlier code: a delivered event and a retried
one from before the plan and the first attempt ran in one local activity (the
``plan-and-send`` patch). A workflow in flight across an upgrade replays its history on the
new code; if that code no longer makes the same commands, the workflow is stuck.
The key in the file is the test run's throwaway key that encrypted those payloads.
"""

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from hub.config import Settings
from hub.core.models import Outcome
from hub.runtime.codec import data_converter
from workflows.dispatch import DispatchEventWorkflow

HISTORIES = Path(__file__).resolve().parent / "histories"


def recorded(name: str) -> tuple[str, list[WorkflowHistory]]:
    stored = json.loads((HISTORIES / name).read_text())
    histories = [
        WorkflowHistory.from_json(h["workflow_id"], h["history"]) for h in stored["histories"]
    ]
    return stored["secret_key"], histories


@pytest.mark.parametrize("index", [0, 1], ids=["delivered", "retried"])
async def test_histories_from_before_plan_and_send_replay(index: int):
    key, histories = recorded("dispatch_before_plan_and_send.json")
    history = histories[index]
    # Recorded before the patch: the plan and the first attempt were two local activities.
    markers = [e for e in history.events if e.HasField("marker_recorded_event_attributes")]
    assert [e.marker_recorded_event_attributes.marker_name for e in markers[:2]] == [
        "core_local_activity",
        "core_local_activity",
    ]
    replayer = Replayer(
        workflows=[DispatchEventWorkflow],
        data_converter=data_converter(Settings(secret_key=key)),
    )

    result = await replayer.replay_workflow(history)

    assert result.replay_failure is None


async def test_a_new_history_replays(
    hub, sink, make_service, make_rule, temporal, settings, unique
):
    service = await make_service()
    await make_rule(f"{unique}.ok", service, endpoint="/ok")
    await make_rule(f"{unique}.ok", service, endpoint="/retried")
    sink.script("/retried", 503)

    emitted = await hub.emit(f"{unique}.ok", {"n": 1}, event_id=f"{unique}-1", wait=True)

    assert emitted.result.outcome is Outcome.DELIVERED
    assert len(sink.at("/ok")) == 1 and len(sink.at("/retried")) == 2
    history = await temporal.get_workflow_handle(emitted.workflow_id).fetch_history()
    markers = [
        e.marker_recorded_event_attributes.marker_name
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]
    # The patch marker, then one local activity for the plan and both first attempts.
    assert markers == ["core_patch", "core_local_activity"]
    replayer = Replayer(workflows=[DispatchEventWorkflow], data_converter=data_converter(settings))
    assert (await replayer.replay_workflow(history)).replay_failure is None
