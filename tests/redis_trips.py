"""Counting a client's round trips to Redis: every send of redis-py's connections (one command, or a
pipeline's commands at once) for the length of a ``with`` block, with the names of the commands sent.
Works the same on fakeredis (its connections send through redis-py's) and on a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from redis.connection import AbstractConnection


def command_names(payload: bytes) -> list[str]:
    """The names of the commands packed in ``payload`` (RESP arrays of bulk strings, one a command)."""
    names: list[str] = []
    at = 0
    while at < len(payload):
        end = payload.index(b"\r\n", at)
        arguments, at = int(payload[at + 1 : end]), end + 2  # "*N"
        for index in range(arguments):
            end = payload.index(b"\r\n", at)
            length, at = int(payload[at + 1 : end]), end + 2  # "$len"
            if index == 0:
                names.append(payload[at : at + length].decode().upper())
            at += length + 2
    return names


@contextmanager
def counted_round_trips() -> Iterator[list[list[str]]]:
    """Yields the sends made in the block, each the list of the command names it carried."""
    sends: list[list[str]] = []
    send = AbstractConnection.send_packed_command

    def counted(self, command, *args, **options):
        payload = (
            command.encode()
            if isinstance(command, str)
            else b"".join(part if isinstance(part, bytes) else bytes(part) for part in command)
        )
        sends.append(command_names(payload))
        return send(self, command, *args, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AbstractConnection, "send_packed_command", counted)
        yield sends
