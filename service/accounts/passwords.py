"""Password hashing with argon2id, off the event loop.

Parameters follow OWASP's argon2id recommendation (19 MiB, two passes, one lane):
about 20 ms a hash on the project's machine, and bounded memory with the default
thread pool. A stored hash made with other parameters is replaced at the next
successful login.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 8
MAX_LENGTH = 256


class PasswordHashing:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher(
            time_cost=2, memory_cost=19_456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
        )
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    async def verify_nothing(self, password: str) -> None:
        """Spend the time a real check takes, so an unknown login is not told apart by timing."""
        if self._dummy is None:
            self._dummy = await self.hash("not a password of anyone")
        await self.verify(self._dummy, password)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False


PASSWORDS = PasswordHashing()
"""The process's hasher: its parameters decide what `needs_rehash` replaces."""
