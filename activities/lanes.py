"""The activity an ordered lane uses to tell a slow head from one whose workflow is gone."""

from typing import Final, Literal

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

RUNNING: Final = "running"
CLOSED: Final = "closed"
MISSING: Final = "missing"
WorkflowState = Literal["running", "closed", "missing"]


class LaneActivities:
    """Describes workflows through the worker's Temporal client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def workflow_state(self, workflow_id: str) -> WorkflowState:
        """Whether the workflow (its latest run) is running, closed, or not there at all (a
        ticket taken by an emitter that has not started it yet, or that failed to)."""
        try:
            described = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status is RPCStatusCode.NOT_FOUND:
                return MISSING
            raise
        if described.status is WorkflowExecutionStatus.RUNNING:
            return RUNNING
        return CLOSED
