"""Login throttling in Redis, per account (login hash) and per client address.

Every attempt is counted before the password is checked, atomically, so a burst of
parallel guesses cannot all slip in under the limit; a successful login clears the
account's count and gives its address back the attempt. Windows are fixed: they
start at the first counted attempt and last `window_seconds`.

Redis only protects here, it never decides who someone is: when it is unreachable
the throttle fails open (a warning in the logs, never the login name).
"""

from __future__ import annotations

from dataclasses import dataclass

from service.accounts.errors import LoginThrottledError
from service.i18n import _
from service.observability import get_logger
from service.redis import RedisClient, key

_log = get_logger("carbon_points.accounts.throttle")
# Give an attempt back only while its window lives: a bare DECR on an expired key would
# leave a negative count with no expiry behind.
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
"""


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    per_account: int = 5
    per_address: int = 20
    window_seconds: int = 15 * 60

    def _keys(self, login_hash: bytes, address: str) -> tuple[str, str]:
        return key(f"login-account:{login_hash.hex()}"), key(f"login-address:{address}")

    async def attempt(self, redis: RedisClient, login_hash: bytes, address: str) -> None:
        """Count an attempt; LoginThrottledError (with Retry-After) when over a limit."""
        account_key, address_key = self._keys(login_hash, address)
        try:
            pipe = redis.pipeline(transaction=False)
            for key in (account_key, address_key):
                # SET NX EX then INCR: the window starts with the first attempt (Redis 6 too).
                pipe.set(key, 0, ex=self.window_seconds, nx=True)
                pipe.incr(key)
                pipe.ttl(key)
            (
                _fails,
                account_count,
                account_ttl,
                _also,
                address_count,
                address_ttl,
            ) = await pipe.execute()
        except Exception as exc:  # Redis speeds and protects, it never gates logins
            _log.warning("login throttle unavailable; not limiting", error=type(exc).__name__)
            return
        waits = []
        if int(account_count) > self.per_account:
            waits.append(int(account_ttl))
        if int(address_count) > self.per_address:
            waits.append(int(address_ttl))
        if waits:
            retry_after = max(1, *waits)
            error = LoginThrottledError(
                _("too many failed logins; try again in %(seconds)s s", seconds=retry_after),
                retry_after=retry_after,
            )
            error.headers["retry-after"] = str(retry_after)
            raise error

    async def succeeded(self, redis: RedisClient, login_hash: bytes, address: str) -> None:
        account_key, address_key = self._keys(login_hash, address)
        try:
            # One key a command: the two keys may live on different Redis Cluster slots.
            pipe = redis.pipeline(transaction=False)
            pipe.delete(account_key)
            pipe.eval(_GIVE_BACK, 1, address_key)
            await pipe.execute()
        except Exception as exc:
            _log.warning("login throttle unavailable; not reset", error=type(exc).__name__)
