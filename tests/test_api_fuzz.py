"""Property-based test of every operation in the API's OpenAPI: no input may cause a 5xx.

Schemathesis generates requests from /openapi.json (the documented examples, valid data
and invalid data) and sends them to the app over ASGI. The app runs on its own fresh
database and on a task queue that no worker polls. The services and rules it creates
cannot reach other tests' events, and nothing it starts is ever delivered, so the DLQ
stays empty and no replay is ever waited for.

Schemathesis' own pytest integration (``from_fixture``) does not run on pytest 9.2: it
sets ``Function._nodeid``, which pytest renamed. Its strategies work with plain Hypothesis.
"""

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from hub.api import create_app
from hub.core.models import RuleIn, ServiceIn
from hub.secrets import SecretBox
from hub.store import Store, migrate

TOKEN = "fuzz-api-token-0123456789"
EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
async def fuzz_settings(settings, fresh_database, worker):
    """An isolated hub (``worker`` has registered the search attributes it needs).

    It has the service and rule that the OpenAPI examples name (``crm``, rule 1), so those
    examples reach real rows.
    """
    url = await fresh_database("fuzz")
    await migrate(url)
    async with Store.open(url, box=SecretBox.from_settings(settings), max_size=1) as store:
        await store.services.create(
            ServiceIn(name="crm", base_url="http://127.0.0.1:9", inbound_token="hook")
        )
        await store.rules.create(RuleIn(event="order.*", service="crm"))
    return settings.model_copy(
        update={
            "database_url": url,
            "task_queue": f"{settings.task_queue}-fuzz",
            "api_token": SecretStr(TOKEN),
        }
    )


async def test_no_input_causes_a_server_error(fuzz_settings, subtests):
    # The app opens its own store and Temporal client in its lifespan, which schemathesis
    # runs on an event loop of its own and ends after the test. Hypothesis runs in a
    # thread, so this loop (and the session's worker on it) keeps running.
    app = create_app(fuzz_settings)
    schema = await asyncio.to_thread(schemathesis.openapi.from_asgi, "/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    operations.sort(key=lambda op: op.method == "delete")  # keep the seeded rows for the rest

    for operation in operations:
        cases = st.one_of(
            *schema.get_strategies_from_examples(operation),
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error]
            )

        with subtests.test(msg=operation.label):
            await asyncio.to_thread(no_server_error)
