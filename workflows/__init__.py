"""Deterministic workflow code only: everything here runs in Temporal's sandbox."""

from workflows.consume import ConsumeResponsesWorkflow
from workflows.dispatch import DispatchEventWorkflow
from workflows.replay import ReplayDeadLetterWorkflow

__all__ = ["ConsumeResponsesWorkflow", "DispatchEventWorkflow", "ReplayDeadLetterWorkflow"]
