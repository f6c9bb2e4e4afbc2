"""Size limits, pure: the event size limit and the rendered payload limit (template bombs)."""

import json
import pickle
import time
import tracemalloc
from datetime import UTC, datetime

import pytest

from hub.config import Settings
from hub.core.limits import EventTooLarge, check_event_size, event_bytes
from hub.core.models import Event
from hub.core.templating import PayloadTooLarge, TemplateError, check, render

OCCURRED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
MiB = 1024 * 1024


def event(**data) -> Event:
    return Event(id="evt-1", name="order.created", data=data, occurred_at=OCCURRED)


# --- settings --------------------------------------------------------------------------------


def test_limits_default_to_one_mib_and_read_the_environment(monkeypatch):
    for name in ("HUB_MAX_EVENT_BYTES", "HUB_MAX_PAYLOAD_BYTES", "HUB_CODEC_CORS_ORIGINS"):
        monkeypatch.delenv(name, raising=False)
    defaults = Settings()
    assert (defaults.max_event_bytes, defaults.max_payload_bytes) == (MiB, MiB)
    monkeypatch.setenv("HUB_MAX_EVENT_BYTES", "2048")
    monkeypatch.setenv("HUB_MAX_PAYLOAD_BYTES", "4096")
    monkeypatch.setenv("HUB_CODEC_CORS_ORIGINS", "http://127.0.0.1:8233")
    settings = Settings()
    assert (settings.max_event_bytes, settings.max_payload_bytes) == (2048, 4096)
    assert defaults.codec_cors_origins == ""
    assert settings.codec_cors_origins == "http://127.0.0.1:8233"


@pytest.mark.parametrize("field", ["max_event_bytes", "max_payload_bytes"])
def test_limits_below_1024_are_refused(field):
    with pytest.raises(ValueError, match="1024"):
        Settings(**{field: 1023})


# --- event size ------------------------------------------------------------------------------


def test_event_bytes_is_the_utf8_size_of_the_event_json():
    e = event(text="café ☃")  # é is 2 bytes in UTF-8, ☃ is 3
    stored = e.model_dump_json()
    assert event_bytes(e) == len(stored.encode()) == len(stored) + 1 + 2
    assert Event.model_validate_json(stored) == e


def test_event_at_the_limit_passes_and_one_byte_more_fails():
    base = event(pad="")
    limit = event_bytes(base) + 100
    exact = event(pad="x" * 100)
    assert event_bytes(exact) == limit
    check_event_size(exact, limit)

    over = event(pad="x" * 101)
    with pytest.raises(EventTooLarge) as caught:
        check_event_size(over, limit)
    assert str(caught.value) == (
        f"event is {limit + 1} bytes, over the limit of {limit} bytes (HUB_MAX_EVENT_BYTES)"
    )
    assert (caught.value.size, caught.value.limit) == (limit + 1, limit)


def test_multibyte_characters_count_as_their_utf8_bytes():
    limit = event_bytes(event(pad="")) + 3
    check_event_size(event(pad="☃"), limit)  # one character, three bytes
    with pytest.raises(EventTooLarge):
        check_event_size(event(pad="☃x"), limit)


def test_event_too_large_is_a_value_error_and_survives_pickling():
    error = EventTooLarge(2000, 1024)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.size, copy.limit) == (str(error), 2000, 1024)


# --- rendered payload size -------------------------------------------------------------------


def test_payload_at_the_limit_passes_and_one_byte_more_fails():
    template = '{"v": "{{data.v}}"}'
    exact = render(template, event(v="é" * 10))
    size = len(exact.encode())
    assert size == len(exact) + 10
    assert render(template, event(v="é" * 10), max_bytes=size) == exact

    with pytest.raises(PayloadTooLarge) as caught:
        render(template, event(v="é" * 10 + "x"), max_bytes=size)
    message = str(caught.value)
    assert message == (
        f"rendered payload is over {size} bytes (at least {size + 1}), "
        f"the limit is HUB_MAX_PAYLOAD_BYTES={size}"
    )
    assert isinstance(caught.value, TemplateError)
    assert (caught.value.size, caught.value.limit) == (size + 1, size)


def test_literal_text_counts_too():
    template = json.dumps({"pad": "y" * 5000, "id": "{{id}}"})
    rendered = render(template, event())
    size = len(rendered)
    assert render(template, event(), max_bytes=size) == rendered
    with pytest.raises(PayloadTooLarge, match=f"at least {size}\\)"):
        render(template, event(), max_bytes=size - 1)


def test_whole_event_template_is_checked():
    e = event(v="z" * 3000)
    whole = render("", e)
    size = len(whole.encode())
    assert render(" \n", e, max_bytes=size) == whole
    with pytest.raises(PayloadTooLarge, match=f"over {size - 1} bytes \\(at least {size}\\)"):
        render("", e, max_bytes=size - 1)


def test_template_bomb_stops_early_in_bounded_time_and_memory():
    value = "x" * (200 * 1024)
    template = "[" + ",".join(["{{data.v}}"] * 100) + "]"  # 100 times 200 KiB: 20 MB unbounded
    bomb = event(v=value)

    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(PayloadTooLarge) as caught:
            render(template, bomb, max_bytes=MiB)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert elapsed < 0.5, elapsed
    assert peak < 4 * MiB, peak  # the full rendering would be 20 MB
    # It stopped at the first value that passed the limit: 6 values of 200 KiB and their quotes.
    assert MiB < caught.value.size < MiB + len(value) + 100
    assert f"over {MiB} bytes" in str(caught.value)


def test_bomb_inside_a_string_literal_is_bounded_too():
    template = '{"s": "' + "{{data.obj}}" * 1000 + '"}'
    bomb = event(obj={"k": '"' * 10_000})  # each quote escapes twice: \\\"
    started = time.perf_counter()
    with pytest.raises(PayloadTooLarge):
        render(template, bomb, max_bytes=64 * 1024)
    assert time.perf_counter() - started < 0.5


def test_no_limit_renders_everything():
    template = "[" + ",".join(["{{data.v}}"] * 50) + "]"
    rendered = render(template, event(v="x" * 30_000))
    assert json.loads(rendered) == ["x" * 30_000] * 50


def test_repeated_placeholders_render_the_same_as_before():
    template = '{"a": {{data.o}}, "b": "{{data.o}}", "c": {{data.o}}, "d": "{{data.o}}"}'
    o = {"k": 'q"', "n": [1, 2]}
    parsed = json.loads(render(template, event(o=o), max_bytes=1024))
    assert parsed == {"a": o, "b": json.dumps(o, separators=(",", ":")), "c": o, "d": parsed["b"]}


def test_payload_too_large_survives_pickling():
    copy = pickle.loads(pickle.dumps(PayloadTooLarge(5000, 4096)))
    assert (copy.size, copy.limit) == (5000, 4096)
    assert "HUB_MAX_PAYLOAD_BYTES=4096" in str(copy)


def test_check_still_renders_placeholders_as_missing():
    assert json.loads(check('{"a": {{data.x}}, "b": "{{data.y}}"}')) == {"a": None, "b": ""}
