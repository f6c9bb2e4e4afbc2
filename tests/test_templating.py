import json
from datetime import UTC, datetime

import pytest

from hub.core.models import Event
from hub.core.templating import TemplateError, check, render

OCCURRED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def event(**data) -> Event:
    return Event(id="evt-1", name="order.created", data=data, occurred_at=OCCURRED)


# --- strings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('say "hi"', r'{"m": "x say \"hi\""}'),
        ("back\\slash", r'{"m": "x back\\slash"}'),
        ("two\nlines\ttab", r'{"m": "x two\nlines\ttab"}'),
        ("caf\u00e9 \u2603", '{"m": "x caf\u00e9 \u2603"}'),
        ("bell\x07", r'{"m": "x bell\u0007"}'),
    ],
)
def test_string_inside_string_literal_is_json_escaped(value, expected):
    rendered = render('{"m": "x {{data.v}}"}', event(v=value))
    assert rendered == expected
    assert json.loads(rendered) == {"m": f"x {value}"}


def test_string_outside_quotes_gets_quoted():
    rendered = render('{"m": {{data.v}}}', event(v='a "b"\n'))
    assert rendered == r'{"m": "a \"b\"\n"}'
    assert json.loads(rendered) == {"m": 'a "b"\n'}


# --- other JSON types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(42, "42"), (-1.5, "-1.5"), (True, "true"), (False, "false"), (None, "null")],
)
def test_scalars_outside_quotes_are_inserted_as_json(value, expected):
    assert render('{"v": {{data.v}}}', event(v=value)) == '{"v": ' + expected + "}"


@pytest.mark.parametrize(("value", "expected"), [(42, "42"), (True, "true"), (-1.5, "-1.5")])
def test_scalars_inside_quotes_are_inserted_as_text(value, expected):
    assert render('{"v": "n={{data.v}}"}', event(v=value)) == '{"v": "n=' + expected + '"}'


def test_object_and_array_outside_quotes_are_inserted_as_json():
    rendered = render(
        '{"o": {{data.obj}}, "a": {{data.arr}}}',
        event(obj={"k": "v", "n": [1, 2]}, arr=[1, "two", None]),
    )
    assert rendered == '{"o": {"k":"v","n":[1,2]}, "a": [1,"two",null]}'


def test_object_and_array_inside_quotes_are_escaped_json_text():
    obj = {"k": 'say "hi"', "n": [1, 2]}
    arr = [1, "two", None]
    rendered = render('{"o": "{{data.obj}}", "a": "{{data.arr}}"}', event(obj=obj, arr=arr))
    parsed = json.loads(rendered)
    assert isinstance(parsed["o"], str)
    assert json.loads(parsed["o"]) == obj
    assert json.loads(parsed["a"]) == arr


# --- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{data.user.id}}", "7"),
        ("{{user.id}}", "7"),
        ("{{user.name}}", '"ann"'),
        ("{{data.items.1}}", '"b"'),
        ("{{items.0}}", '"a"'),
        ("{{id}}", '"evt-1"'),
        ("{{name}}", '"order.created"'),
        ("{{occurred_at}}", '"2024-01-02T03:04:05Z"'),
        ("{{ data.user.id }}", "7"),
        ("{{\tuser.id\n}}", "7"),
    ],
)
def test_paths(template, expected):
    e = event(user={"id": 7, "name": "ann"}, items=["a", "b"])
    assert render(template, e) == expected


def test_top_level_fields_inside_string():
    assert render('"{{name}}#{{id}}"', event()) == '"order.created#evt-1"'


@pytest.mark.parametrize(
    "path", ["data.nope", "nope", "user.nope", "items.5", "items.x", "user.id.deeper"]
)
def test_missing_value_is_null_outside_string_and_empty_inside(path):
    e = event(user={"id": 7}, items=["a"])
    assert render("{{" + path + "}}", e) == "null"
    assert render('"<{{' + path + '}}>"', e) == '"<>"'


def test_inserted_values_are_not_expanded_again():
    e = event(v="{{data.secret}}", secret="leak")
    assert render('{"a": "{{data.v}}", "b": {{data.v}}}', e) == (
        '{"a": "{{data.secret}}", "b": "{{data.secret}}"}'
    )


def test_escaped_quote_keeps_placeholder_inside_string():
    rendered = render(r'{"k": "a \" {{data.x}}"}', event(x='q"'))
    assert rendered == r'{"k": "a \" q\""}'
    assert json.loads(rendered) == {"k": 'a " q"'}


def test_escaped_backslash_before_closing_quote_ends_string():
    # "a\\" is a complete string, so the placeholder after it is outside quotes.
    rendered = render(r'["a\\", {{data.x}}]', event(x="s"))
    assert rendered == r'["a\\", "s"]'


# --- whole event -----------------------------------------------------------------------------


@pytest.mark.parametrize("template", ["", "   ", "\n\t "])
def test_empty_template_renders_whole_event_as_compact_json(template):
    e = event(user={"id": 7}, tags=["x", "y"])
    rendered = render(template, e)
    assert rendered == (
        '{"id":"evt-1","name":"order.created","data":{"user":{"id":7},"tags":["x","y"]},'
        '"occurred_at":"2024-01-02T03:04:05Z"}'
    )
    assert json.loads(rendered) == e.model_dump(mode="json")


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    ['{"a": }', "{", '{"a": {{data.x}} {{data.y}}}', '"{{data.x}}" trailing'],
)
def test_rendering_invalid_json_raises(template):
    with pytest.raises(TemplateError, match="invalid JSON"):
        render(template, event(x=1, y=2))


@pytest.mark.parametrize("template", ['{"a": {{data.x}', '{"a": {{data.x', "{{"])
def test_unclosed_placeholder_raises(template):
    with pytest.raises(TemplateError, match="unclosed"):
        render(template, event(x=1))


@pytest.mark.parametrize("path", ["a..b", ".a", "a.", "", "a b", "a[0]", "a/b"])
def test_invalid_path_raises(path):
    with pytest.raises(TemplateError, match="invalid placeholder"):
        render("{{" + path + "}}", event())


def test_template_error_is_a_value_error():
    assert issubclass(TemplateError, ValueError)


# --- check -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "",
        '{"id": {{data.id}}, "msg": "hi {{user.name}}", "all": {{data}}}',
        '[{{id}}, "{{name}}"]',
    ],
)
def test_check_accepts_good_templates(template):
    assert json.loads(check(template)) is not None


@pytest.mark.parametrize(
    "template", ['{"a": {{x}}', '{"a": {{x}', '{"a": {{a..b}}}', '{"a": "{{x}}}']
)
def test_check_rejects_bad_templates(template):
    with pytest.raises(TemplateError):
        check(template)
