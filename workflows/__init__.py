"""Deterministic workflow code only: everything here runs in Temporal's sandbox.

Import each workflow from its own module: the sandbox re-imports a workflow's module for
every run, and a package that re-exported all of them would make every run import all.
"""
