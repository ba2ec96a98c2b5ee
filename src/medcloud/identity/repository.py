"""Queries on the identity context's tables. Repositories never commit."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.identity.models import Organisation, UserAccount


async def get_user_by_email(session: AsyncSession, email: str) -> UserAccount | None:
    """Return the user with this email (case-insensitive), or None."""
    return await session.scalar(select(UserAccount).where(UserAccount.email == email.lower()))


async def get_user(session: AsyncSession, user_id: str) -> UserAccount | None:
    """Return the user, or None."""
    return await session.get(UserAccount, user_id)


async def count_users(session: AsyncSession) -> int:
    """Count every user."""
    return int(await session.scalar(select(func.count()).select_from(UserAccount)) or 0)


async def first_organisation(session: AsyncSession) -> Organisation | None:
    """Return the oldest organisation, or None."""
    return await session.scalar(select(Organisation).order_by(Organisation.created_at).limit(1))
