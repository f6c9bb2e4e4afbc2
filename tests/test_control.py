"""The pure rules of delivery control: rates, order keys, lanes, hold tags."""

import pytest
from pydantic import TypeAdapter, ValidationError

from hub.core.control import (
    MISSING_KEY,
    HoldReason,
    OrderKey,
    Rate,
    held_tags,
    lane_id,
    order_value,
    rate_per_second,
)
from hub.core.models import RuleIn, ServiceIn, ServicePatch

RATE = TypeAdapter(Rate)
ORDER_KEY = TypeAdapter(OrderKey)


@pytest.mark.parametrize(
    ("text", "per_second", "canonical"),
    [
        ("10/s", 10.0, "10/s"),
        ("30/min", 0.5, "30/min"),
        (" 2 / second ", 2.0, "2/s"),
        ("1.5/s", 1.5, "1.5/s"),
        ("120/minute", 2.0, "120/min"),
        ("6/m", 0.1, "6/min"),
    ],
)
def test_rates_parse_to_per_second_and_a_canonical_spelling(
    text: str, per_second: float, canonical: str
) -> None:
    assert rate_per_second(text) == pytest.approx(per_second)
    assert RATE.validate_python(text) == canonical


@pytest.mark.parametrize("text", ["", "10", "ten/s", "10/h", "0/s", "-1/s", "10/s/s", "1e9/s"])
def test_bad_rates_say_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate"):
        rate_per_second(text)


@pytest.mark.parametrize("path", ["data.user_id", "name", "data.items.0.sku", "data.a-b"])
def test_dotted_paths_are_order_keys(path: str) -> None:
    assert ORDER_KEY.validate_python(path) == path


@pytest.mark.parametrize(
    "path", ["", "data..id", ".data", "data.", "data[0]", "data user", "$.data", "a" * 201]
)
def test_other_paths_are_refused_with_an_example(path: str) -> None:
    with pytest.raises(ValidationError, match="dotted path"):
        ORDER_KEY.validate_python(path)


def test_order_values_read_the_event_and_name_a_missing_key() -> None:
    event = {
        "id": "e1",
        "name": "order.paid",
        "data": {
            "user_id": 42,
            "items": [{"sku": "A"}],
            "vip": True,
            "none": None,
            "obj": {"b": 1, "a": 2},
        },
    }
    assert order_value("data.user_id", event) == "42"
    assert order_value("data.items.0.sku", event) == "A"
    assert order_value("data.vip", event) == "true"
    assert order_value("name", event) == "order.paid"
    assert order_value("data.obj", event) == '{"a":2,"b":1}'
    assert order_value("data.none", event) == MISSING_KEY
    assert order_value("data.absent", event) == MISSING_KEY
    assert order_value("data.items.5.sku", event) == MISSING_KEY


def test_lane_ids_are_readable_and_long_keys_stay_unique_and_short() -> None:
    assert lane_id("crm", "42") == "lane:crm:42"
    first, second = lane_id("crm", "x" * 500 + "1"), lane_id("crm", "x" * 500 + "2")
    assert first != second
    assert len(first) < 120


def test_held_tags_count_by_service_by_reason_and_by_rule_for_lanes() -> None:
    assert held_tags("crm", HoldReason.PAUSED) == ["crm", "crm:paused"]
    assert held_tags("crm", HoldReason.LANE, 7) == ["crm", "crm:lane", "rule:7:lane"]
    assert held_tags("crm", HoldReason.RATE_LIMITED, 7) == ["crm", "crm:rate_limited"]


def test_models_refuse_out_of_range_controls() -> None:
    base = {"name": "crm", "base_url": "http://example.com"}
    with pytest.raises(ValidationError, match="greater than 0"):
        ServiceIn.model_validate(base | {"weight": 0})
    with pytest.raises(ValidationError, match="invalid rate"):
        ServicePatch.model_validate({"rate": "fast"})
    rule = {"event": "order.*", "service": "crm"}
    with pytest.raises(ValidationError, match="less than or equal to 5"):
        RuleIn.model_validate(rule | {"priority": 6})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        RuleIn.model_validate(rule | {"priority": 0})
    assert RuleIn.model_validate(rule).priority == 3
    assert ServiceIn.model_validate(base).max_hold == 86400
