"""Fault drills: each breaks something real and counts what was emitted against what arrived."""
