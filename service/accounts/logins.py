"""Login names (a mobile number or an email address): normalised, then a keyed hash.

The name itself is never stored or logged: users are found by HMAC-SHA256 of the
normalised name under the server's identifier pepper, which an attacker holding only
the database cannot reverse by enumerating phone numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_PUNCTUATION = re.compile(r"[\s().-]")
# Domain separation from the partner subject hashes made with the same pepper.
_CONTEXT = b"carbon-points app login\x00"


def normalise_login(raw: str) -> str | None:
    """`+<digits>` for a phone number (a bare mainland mobile gets +86), a lower-case
    email address, or None when `raw` is neither."""
    text = raw.strip()
    if "@" in text:
        email = text.lower()
        return email if len(email) <= 254 and _EMAIL.match(email) else None
    number = _PHONE_PUNCTUATION.sub("", text)
    if number.startswith("00"):
        number = "+" + number[2:]
    if _CN_MOBILE.match(number):
        return "+86" + number
    if number.startswith("+86") and _CN_MOBILE.match(number[3:]):
        return number
    if number.startswith("+86"):
        return None  # a mainland number that is not a mobile
    return number if _E164.match(number) else None


def login_hash(pepper: str, raw: str) -> bytes:
    """The lookup key for a login name. Names that do not normalise still hash (lower-cased
    and stripped), so a failed login on nonsense is throttled and refused like any other."""
    name = normalise_login(raw) or raw.strip().lower()
    return hmac.new(pepper.encode(), _CONTEXT + name.encode(), hashlib.sha256).digest()
