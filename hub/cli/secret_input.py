"""Secret option values that stay out of ``ps`` and shell history, and options whose value
may be left out.

A secret option's value ``-`` reads one line from stdin; ``env:NAME`` reads the environment
variable NAME; anything else is the value itself.
"""

import os
import sys
from collections.abc import Mapping
from typing import Any

import typer
from typer.core import TyperCommand

from hub.cli.errors import UsageError

STDIN = "-"
ENV_PREFIX = "env:"
SECRET_HELP = "- reads it from stdin, env:NAME from the variable NAME (kept out of ps)."


def read_secrets(values: dict[str, object], options: Mapping[str, str]) -> dict[str, object]:
    """``values`` with each field named in ``options`` (field -> option, for messages) read
    from stdin or the environment when it says so. Only one option can read stdin."""
    from_stdin = [options[f] for f in options if values.get(f) == STDIN]
    if len(from_stdin) > 1:
        raise UsageError(f"only one option can read stdin, but {' and '.join(from_stdin)} say -")
    resolved = dict(values)
    for field, option in options.items():
        value = values.get(field)
        if isinstance(value, str):
            resolved[field] = _read(value, option)
    return resolved


def _read(value: str, option: str) -> str:
    if value == STDIN:
        line = sys.stdin.readline()
        if not line:
            raise UsageError(f"{option} -: stdin is empty")
        return line.rstrip("\r\n")
    if value.startswith(ENV_PREFIX):
        name = value.removeprefix(ENV_PREFIX)
        if not name:
            raise UsageError(f"{option} env:NAME needs a variable name")
        if name not in os.environ:
            raise UsageError(f"{option} env:{name}: the variable {name} is not set")
        return os.environ[name]
    return value


def bare_option(args: list[str], option: str, implied: str) -> list[str]:
    """``option`` given without a value (last, or before another option) as ``option=implied``.

    Typer's options always take their value; this lets ``--sign`` alone mean ``--sign hmac``
    while ``--sign ed25519`` keeps working. Nothing after ``--`` is touched.
    """
    result: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return result + args[i:]
        following = args[i + 1] if i + 1 < len(args) else None
        if arg == option and (following is None or following.startswith("-")):
            result.append(f"{option}={implied}")
        else:
            result.append(arg)
    return result


class SignCommand(TyperCommand):
    """A command whose ``--sign`` may come without a value, meaning ``hmac``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, bare_option(args, "--sign", "hmac"))


SignOption = typer.Option(
    "--sign",
    metavar="[hmac|ed25519]",
    help="Sign deliveries (Standard Webhooks): hmac if no scheme is given, or ed25519. The "
    "new secret (for ed25519, the public key) is printed once. Give NAME before it.",
)
