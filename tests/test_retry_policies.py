"""No workflow retries an activity for ever: every RetryPolicy has a maximum_attempts, and
every activity a workflow runs is given one (Temporal's default retries without limit)."""

import ast
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
RUNS = {"execute_activity_method", "execute_local_activity_method", "execute_activity"}


def calls(name: str) -> list[tuple[str, ast.Call]]:
    found = []
    for path in sorted(WORKFLOWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called == name or (name == "run" and called in RUNS):
                    found.append((f"{path.name}:{node.lineno}", node))
    return found


def keywords(call: ast.Call) -> set[str]:
    return {k.arg for k in call.keywords if k.arg}


def test_every_retry_policy_is_bounded():
    policies = calls("RetryPolicy")
    assert policies, "the workflows define their retry policies"
    assert [where for where, call in policies if "maximum_attempts" not in keywords(call)] == []


def test_every_activity_run_names_its_retry_policy():
    runs = calls("run")
    assert len(runs) >= 5
    assert [where for where, call in runs if "retry_policy" not in keywords(call)] == []
