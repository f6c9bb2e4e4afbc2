"""``/rules``: which events go to which service, and how their body is built."""

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import ValidationError

from hub.api.deps import StateDep, StoreDep, sync_index
from hub.api.errors import invalid_patch, missing_service
from hub.api.examples import EXAMPLES
from hub.api.schemas import RowId, RuleDetail, problems
from hub.core.models import Rule, RuleIn, RulePatch, ServiceName
from hub.engine.hold_counts import lane_depth
from hub.store import NotFoundError

router = APIRouter(prefix="/rules", tags=["rules"])


@router.get("", response_model=list[Rule])
async def list_rules(store: StoreDep, service: ServiceName | None = None) -> list[Rule]:
    """Every rule (or one service's), by id."""
    return await store.rules.all(service=service)


@router.post("", status_code=201, response_model=Rule)
async def create_rule(
    spec: Annotated[RuleIn, Body(openapi_examples=EXAMPLES["rule"])], state: StateDep
) -> Rule:
    """Add a rule; 422 if its service does not exist or its template cannot render JSON."""
    try:
        rule = await state.store.rules.create(spec)
    except NotFoundError as error:
        raise missing_service(error) from None
    await sync_index(state)
    return rule


@router.get("/{rule_id}", response_model=RuleDetail, responses=problems(404))
async def get_rule(rule_id: RowId, state: StateDep) -> RuleDetail:
    """One rule, with how many of its deliveries wait in ordered lanes (null when Temporal
    is unreachable)."""
    rule = await state.store.rules.get(rule_id)
    depth = await lane_depth(state.temporal, rule.id)
    return RuleDetail.model_validate(rule.model_dump() | {"lane_depth": depth})


@router.patch("/{rule_id}", response_model=Rule, responses=problems(404))
async def update_rule(
    rule_id: RowId,
    patch: Annotated[RulePatch, Body(openapi_examples=EXAMPLES["rule_patch"])],
    state: StateDep,
) -> Rule:
    """Change the given fields; the resulting rule is checked as a whole (422)."""
    await state.store.rules.get(rule_id)  # 404 for the rule itself
    try:
        rule = await state.store.rules.update(rule_id, patch)
    except ValidationError as error:
        raise invalid_patch(error) from None
    except NotFoundError as error:
        raise missing_service(error) from None
    await sync_index(state)
    return rule


@router.delete("/{rule_id}", status_code=204, responses=problems(404))
async def delete_rule(rule_id: RowId, state: StateDep) -> None:
    """Delete a rule: events stop matching it at once."""
    await state.store.rules.delete(rule_id)
    await sync_index(state)
