"""Pure pieces of surviving faults: waiting for a server at start-up, cleaning outside text."""

import asyncio

import asyncpg
import pytest
from temporalio.service import RPCError, RPCStatusCode

from hub.core.text import MAX_TEXT_CHARS, clean_text
from hub.engine.startup import not_up_yet, when_up


async def test_when_up_waits_for_a_server_that_is_not_up_yet():
    failures = [ConnectionRefusedError(111, "refused"), asyncpg.CannotConnectNowError("starting")]

    async def step() -> str:
        if failures:
            raise failures.pop(0)
        return "up"

    assert await when_up("PostgreSQL", step, wait=10) == "up"
    assert failures == []


async def test_when_up_does_not_wait_for_an_error_time_cannot_change():
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.InvalidPasswordError("password authentication failed")

    with pytest.raises(asyncpg.InvalidPasswordError):
        await when_up("PostgreSQL", step, wait=10)
    assert calls == 1


async def test_when_up_gives_up_after_its_wait():
    async def step() -> None:
        raise ConnectionRefusedError(111, "refused")

    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(when_up("PostgreSQL", step, wait=0.6), 5)


def test_which_temporal_errors_mean_not_up_yet():
    assert not_up_yet(RPCError("down", RPCStatusCode.UNAVAILABLE, b""))
    assert not_up_yet(RuntimeError("Failed client connect: Frontend is not healthy yet"))
    assert not not_up_yet(RPCError("no such namespace", RPCStatusCode.NOT_FOUND, b""))
    assert not not_up_yet(RuntimeError("something else"))


def test_clean_text_removes_what_postgresql_or_a_reader_cannot_take():
    assert clean_text("a\x00b\x07c\td\ne") == "abc\td\ne"
    assert clean_text(b"ok \xff\xfe end") == "ok \ufffd\ufffd end"
    assert clean_text("lone \ud800 surrogate") == "lone  surrogate"
    long = clean_text("x" * (MAX_TEXT_CHARS * 3))
    assert len(long) == MAX_TEXT_CHARS and long.endswith("(truncated)")
