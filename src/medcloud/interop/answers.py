"""The answers given to HL7 messages, by control id: looked up before a message is processed,
written after it in batches.

Writing each answer in a transaction of its own cost a commit per message, as much as storing its
readings. Written a few milliseconds later, together with the answers of every connection
meanwhile, it costs a share of one. Until its row is committed an answer is kept in memory, where
a repeat to this process finds it. Nothing depends on the write for correctness: a repeat that
another process receives before it (or that arrives after a crash lost it) is processed again,
and that stores nothing twice (readings are keyed by series and time; a patient or an
attachment already as the message says is left alone) and answers alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass

import structlog
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.interop.models import ProcessedMessage
from medcloud.platform.db import upsert
from medcloud.platform.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)

WRITE_AFTER_SECONDS = 0.02


@dataclass(frozen=True)
class Answer:
    """What a message was answered."""

    interface_id: str
    control_id: str
    message_type: str
    code: str
    ack: str
    at: dt.datetime


class Answers:
    """This process's record of answers given."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        read_sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self._uow_factory = uow_factory
        self._read_sessions = read_sessions
        self._pending: dict[tuple[str, str], Answer] = {}
        self._writer: asyncio.Task[None] | None = None

    async def given(self, interface_id: str, control_id: str) -> Answer | None:
        """Return the answer given to this message before, or None."""
        pending = self._pending.get((interface_id, control_id))
        if pending is not None:
            return pending
        query = select(
            ProcessedMessage.message_type,
            ProcessedMessage.ack_code,
            ProcessedMessage.ack,
            ProcessedMessage.received_at,
        ).where(
            ProcessedMessage.interface_id == interface_id,
            ProcessedMessage.control_id == control_id,
        )
        async with self._read_sessions() as session:
            row = (await session.execute(query)).first()
        if row is None:
            return None
        return Answer(interface_id, control_id, row[0], row[1], row[2], row[3])

    def keep(self, answer: Answer) -> None:
        """Record an answer (written shortly, with the others given meanwhile)."""
        self._pending.setdefault((answer.interface_id, answer.control_id), answer)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_later(), name="hl7-answers")

    async def close(self) -> None:
        """Write what is pending (before the database closes)."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        await self.write()

    async def _write_later(self) -> None:
        await asyncio.sleep(WRITE_AFTER_SECONDS)
        await self.write()

    async def write(self) -> int:
        """Write the pending answers in one transaction; return how many."""
        # They stay in `_pending` until their row is committed: taken out before, a repeat
        # arriving during the write found neither them nor the row, and was answered anew.
        pending = dict(self._pending)
        if not pending:
            return 0
        rows = [
            {
                "interface_id": a.interface_id,
                "control_id": a.control_id,
                "message_type": a.message_type,
                "ack_code": a.code,
                "ack": a.ack,
                "received_at": a.at,
            }
            for _, a in sorted(pending.items())
        ]
        try:
            async with self._uow_factory() as uow:
                statement = upsert(uow.session)(ProcessedMessage).on_conflict_do_nothing()
                await uow.session.execute(statement, rows)
                await uow.commit()
        except SQLAlchemyError as exc:
            # Their repeats are processed again instead, which is safe (see above).
            log.warning("hl7.answers.unwritten", error=type(exc).__name__, count=len(rows))
            self._forget(pending)
            return 0
        self._forget(pending)
        return len(rows)

    def _forget(self, written: dict[tuple[str, str], Answer]) -> None:
        """Drop answers from memory once their write is over (an interrupted write keeps them
        for `close` to write)."""
        for key, answer in written.items():
            if self._pending.get(key) is answer:
                del self._pending[key]
