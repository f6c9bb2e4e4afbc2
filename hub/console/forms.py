"""Forms: what a console form posts, and pydantic's refusal as messages next to each field.

Forms validate with the API's own models (``hub.core.models``); ``form_dict`` turns the posted
form into the dict to validate, ``field_errors`` the ``ValidationError`` into
``{field: message}`` for the ``field()`` macro of ``_forms.html``. No message repeats the
input (it may be a secret).
"""

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

FORM_ERROR = "form"
"""The key of an error that belongs to no one field (a model-level check)."""
NOT_DATA = frozenset({"csrf"})
"""Fields every form carries that are not the model's."""


def form_dict(form: FormData) -> dict[str, Any]:
    """The posted fields, less empty strings, files and the CSRF token. A field posted more
    than once (checkboxes of one name) becomes a list of its values."""
    values: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key in NOT_DATA or not isinstance(value, str) or value == "":
            continue
        if key in values:
            previous = values[key]
            values[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            values[key] = value
    return values


def field_errors(err: ValidationError) -> dict[str, str]:
    """``{field: message}``: a nested field is dotted (``auth.token``), a model-level error is
    under ``FORM_ERROR``; the first message of a field wins."""
    errors: dict[str, str] = {}
    for item in err.errors(include_url=False, include_context=False, include_input=False):
        loc = [str(part) for part in item["loc"] if part != "body"]
        key = ".".join(loc) or FORM_ERROR
        message = str(item["msg"]).removeprefix("Value error, ")
        errors.setdefault(key, message)
    return errors
