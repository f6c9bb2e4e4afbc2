"""Deterministic workflow code only: everything here runs in Temporal's sandbox."""

from workflows.dispatch import DispatchEventWorkflow

__all__ = ["DispatchEventWorkflow"]
