"""Deterministic workflow code only: everything here runs in Temporal's sandbox."""

from workflows.consume import ConsumeResponsesWorkflow
from workflows.dispatch import DispatchEventWorkflow

__all__ = ["ConsumeResponsesWorkflow", "DispatchEventWorkflow"]
