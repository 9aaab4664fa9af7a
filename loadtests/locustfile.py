"""Locust users of carbon-points: partners, app users and merchants, under a rush-hour shape.

Run through ``make loadtest`` (``loadtests/run.py``), which seeds a fresh database, starts the
service, and sets ``LOADTEST_STATE`` to the set-up step's state file. By hand, against a service
seeded by ``python -m loadtests.run --keep-database ...``::

    LOADTEST_STATE=/tmp/loadtest-state.json .venv/bin/locust -f loadtests/locustfile.py \
        --headless --host http://127.0.0.1:8000

Users (their weights share out the users of the shape):

- ``TransitPartner`` (weight 2): a metro and bus operator's back end. Signed batches of
  100-1,000 trips through the SDK's sync ``CarbonPointsClient`` (one per user), of which 1-2%
  are re-sends of trips acknowledged earlier; about 1 batch in 100 is sent twice in a row, as a
  partner does when a response is lost to a timeout. Every re-send must get its original
  outcome back.
- ``BikeSharePartner`` (weight 6): one ride per request, about 1.5% of them re-sends.
- ``UtilityPartner`` (weight 1): last month's meter readings, 500 households a batch.
- ``AppUser`` (weight 8): logs in (argon2id, as a phone would), then balance, history, and the
  explanation of a credit found in the history; logs in again before its token expires.
- ``Merchant`` (weight 3): the customer's phone asks for a redemption code, the till authorises
  (``Idempotency-Key``; 2% are retried with the same key and must replay the same redemption),
  then captures.

Each partner acknowledgement (2xx) is appended to ``<acked_dir>/<kind>-<pid>.tsv`` for the
exactly-once check that follows the run.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

# Runnable as `locust -f loadtests/locustfile.py` from a checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from locust import FastHttpUser, LoadTestShape, User, between, task

from integrations import CarbonPointsClient, Event, Outcome
from loadtests.common import (
    BIKESHARE,
    TRANSIT,
    UTILITY,
    State,
    login_name,
    write_acked,
)
from loadtests.events import bike_ride, billing_month, meter_reading, transit_trip
from service.accounts.tokens import Keyring, mint_access_token

T = TypeVar("T")
_STATE: State | None = None
_SEQ = itertools.count()
_METERS = itertools.count()
NOT_STORED = frozenset({"rejected", "conflict"})


def state() -> State:
    global _STATE
    if _STATE is None:
        path = os.environ.get("LOADTEST_STATE")
        if not path:
            raise RuntimeError("LOADTEST_STATE is unset: run the load test with `make loadtest`")
        _STATE = State.load(Path(path))
    return _STATE


def record(kind: str, partner: str, pairs: Sequence[tuple[Event, Outcome]]) -> None:
    """Append acknowledged outcomes, one write a batch (one file per kind and process)."""
    write_acked(
        Path(state().acked_dir),
        kind,
        ((e.external_id, partner, o.status, o.points, o.grams, o.credit_id) for e, o in pairs),
    )


def same_outcome(a: Outcome, b: Outcome) -> bool:
    return (a.status, a.credit_id, a.points, a.grams) == (b.status, b.credit_id, b.points, b.grams)


class PartnerUser(User):
    """A partner system: the SDK's sync client (gevent-patched httpx), timed into Locust."""

    abstract = True
    partner = ""
    kind = ""

    def on_start(self) -> None:
        key = state().partners[self.partner]
        self.sdk = CarbonPointsClient(
            self.host or state().base_url,
            key_id=key.key_id,
            secret=key.secret,
            timeout=120.0,
            max_retries=3,
        )
        self.rng = random.Random()
        self.prefix = f"{state().run_id}-{self.kind}-{os.getpid()}-{next(_SEQ)}"
        self.count = 0
        self.acked: deque[tuple[Event, Outcome]] = deque(maxlen=5_000)

    def on_stop(self) -> None:
        self.sdk.close()

    def next_id(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count:07d}"

    def timed(self, method: str, name: str, call: Callable[[], T], size: int = 0) -> T | None:
        started = time.perf_counter()
        result: T | None = None
        error: BaseException | None = None
        try:
            result = call()
        except Exception as exc:
            error = exc
        self.environment.events.request.fire(
            request_type=method,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=size,
            exception=error,
            context={},
        )
        return result

    def fail(self, name: str, message: str) -> None:
        self.environment.events.request.fire(
            request_type="CHECK",
            name=name,
            response_time=0,
            response_length=0,
            exception=AssertionError(message),
            context={},
        )

    def settle(
        self, name: str, events: Sequence[Event], outcomes: Sequence[Outcome], fresh: set[str]
    ) -> None:
        """Record what was acknowledged; check re-sends got their original outcome."""
        originals = {e.external_id: o for e, o in self.acked}
        stored = []
        for event, outcome in zip(events, outcomes, strict=True):
            if outcome.status in NOT_STORED:
                self.fail(f"{name}: refused event", f"{outcome.status}: {outcome.problem}")
                continue
            stored.append((event, outcome))
            if event.external_id in fresh:
                self.acked.append((event, outcome))
            elif not same_outcome(originals.get(event.external_id, outcome), outcome):
                self.fail(f"{name}: re-sent event", "a re-send got another outcome")
        record(self.kind, self.partner, stored)

    def resends(self, count: int) -> list[Event]:
        if not self.acked or count <= 0:
            return []
        picked = self.rng.sample(range(len(self.acked)), min(count, len(self.acked)))
        return [self.acked[i][0] for i in picked]


class TransitPartner(PartnerUser):
    weight = 2
    wait_time = between(0.5, 1.5)
    partner = TRANSIT
    kind = "transit"

    @task
    def push_batch(self) -> None:
        rng = self.rng
        size = rng.randint(100, 1000)
        repeats = self.resends(round(size * rng.uniform(0.01, 0.02)))
        fresh = [
            transit_trip(rng, self.next_id(), rng.randrange(state().participants))
            for _ in range(size - len(repeats))
        ]
        events = fresh + repeats
        rng.shuffle(events)
        fresh_ids = {e.external_id for e in fresh}
        name = "/v1/partner/event-batches (transit)"
        outcomes = self.timed(
            "POST", name, lambda: self.sdk.submit_events(events, batch_size=1000), len(events)
        )
        if outcomes is None:
            return
        self.settle(name, events, outcomes, fresh_ids)
        if rng.random() < 0.01:  # the response was "lost": the partner sends it all again
            again = self.timed(
                "POST",
                "/v1/partner/event-batches (transit, timeout retry)",
                lambda: self.sdk.submit_events(events, batch_size=1000),
                len(events),
            )
            if again is not None:
                if not all(same_outcome(a, b) for a, b in zip(outcomes, again, strict=True)):
                    self.fail(name, "a batch sent again got other outcomes")
                self.settle(name, events, again, set())


class BikeSharePartner(PartnerUser):
    weight = 6
    wait_time = between(0.2, 0.6)
    partner = BIKESHARE
    kind = "bikeshare"

    @task
    def push_ride(self) -> None:
        rng = self.rng
        repeat = self.resends(1) if rng.random() < 0.015 else []
        if repeat:
            event, fresh = repeat[0], set()
        else:
            event = bike_ride(rng, self.next_id(), rng.randrange(state().participants))
            fresh = {event.external_id}
        name = "/v1/partner/events (bike-share)"
        outcome = self.timed("POST", name, lambda: self.sdk.submit_event(event), 1)
        if outcome is not None:
            self.settle(name, [event], [outcome], fresh)


class UtilityPartner(PartnerUser):
    weight = 1
    wait_time = between(2.0, 5.0)
    partner = UTILITY
    kind = "utility"

    @task
    def push_meter_readings(self) -> None:
        participants = state().participants
        events = []
        for _ in range(500):
            n = next(_METERS)
            # Last month for every meter, then the month before (a back-fill), and so on.
            month = billing_month(1 + n // participants)
            events.append(meter_reading(state().run_id, n % participants, month))
        name = "/v1/partner/event-batches (utility)"
        outcomes = self.timed(
            "POST", name, lambda: self.sdk.submit_events(events, batch_size=1000), len(events)
        )
        if outcomes is not None:
            # A meter's reading is derived from the meter and the month: a reading another
            # user or process sent already is a re-send with the same content.
            self.settle(name, events, outcomes, {e.external_id for e in events})


class AppUser(FastHttpUser):
    weight = 8
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        users = state().app_users
        self.me = users[next(_SEQ) % len(users)]
        self.rng = random.Random()
        self.credit_ids: list[str] = []
        self.login()

    def login(self) -> None:
        self.token = ""
        self.login_at = time.monotonic()
        with self.client.post(
            "/v1/app/login",
            json={"login": login_name(self.me.index), "password": state().password},
            name="/v1/app/login",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                self.token = response.json()["access_token"]
            else:
                response.failure(f"login: {response.status_code}")

    def headers(self) -> dict[str, str]:
        if not self.token or time.monotonic() - self.login_at > 480:  # tokens last 600 s
            self.login()
        return {"authorization": f"Bearer {self.token}"}

    @task(4)
    def balance(self) -> None:
        self.client.get("/v1/app/balance", headers=self.headers(), name="/v1/app/balance")

    @task(3)
    def history(self) -> None:
        with self.client.get(
            "/v1/app/history?limit=20",
            headers=self.headers(),
            name="/v1/app/history",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"history: {response.status_code}")
                return
            ids = [i["credit_id"] for i in response.json()["items"] if i.get("credit_id")]
            if ids:
                self.credit_ids = ids

    @task(2)
    def explain(self) -> None:
        if not self.credit_ids:
            self.history()
            return
        credit_id = self.rng.choice(self.credit_ids)
        self.client.get(
            f"/v1/app/credits/{credit_id}/explanation",
            headers=self.headers(),
            name="/v1/app/credits/{id}/explanation",
        )


class Merchant(FastHttpUser):
    weight = 3
    wait_time = between(1.0, 3.0)

    def on_start(self) -> None:
        self.shop = state().merchants[next(_SEQ) % len(state().merchants)]
        self.rng = random.Random()
        self.keyring = Keyring.from_secrets(state().jwt_signing_key)
        self.auth = {"authorization": f"Bearer {self.shop.token}"}

    def customer_code(self) -> str | None:
        """The customer's phone: a single-use code from the app (token minted as at login)."""
        customer = self.rng.choice(state().app_users)
        access = mint_access_token(
            self.keyring,
            user_id=uuid.UUID(customer.user_id),
            participant_id=uuid.UUID(customer.participant_id),
            generation=0,
        )
        with self.client.post(
            "/v1/app/redemption-tokens",
            headers={"authorization": f"Bearer {access}"},
            name="/v1/app/redemption-tokens",
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                response.failure(f"redemption code: {response.status_code}")
                return None
            return str(response.json()["token"])

    @task
    def redeem(self) -> None:
        code = self.customer_code()
        if code is None:
            return
        if self.rng.random() < 0.5:
            body: dict[str, Any] = {"redemption_token": code, "offer_id": self.shop.offer_id}
        else:
            body = {"redemption_token": code, "points": self.rng.randint(5, 50)}
        headers = {**self.auth, "Idempotency-Key": str(uuid.uuid4())}
        redemption_id = self.authorise(body, headers, "/v1/merchant/redemptions")
        if redemption_id is None:
            return
        if self.rng.random() < 0.02:  # the till did not see the answer: same key, same body
            again = self.authorise(body, headers, "/v1/merchant/redemptions (retry, same key)")
            if again != redemption_id:
                self.environment.events.request.fire(
                    request_type="CHECK",
                    name="/v1/merchant/redemptions (retry, same key)",
                    response_time=0,
                    response_length=0,
                    exception=AssertionError("a retried authorisation made another redemption"),
                    context={},
                )
        with self.client.post(
            f"/v1/merchant/redemptions/{redemption_id}/capture",
            json={},
            headers={**self.auth, "Idempotency-Key": str(uuid.uuid4())},
            name="/v1/merchant/redemptions/{id}/capture",
            catch_response=True,
        ) as response:
            if response.status_code != 200 or response.json().get("status") != "captured":
                response.failure(f"capture: {response.status_code}")

    def authorise(self, body: dict[str, Any], headers: dict[str, str], name: str) -> str | None:
        with self.client.post(
            "/v1/merchant/redemptions", json=body, headers=headers, name=name, catch_response=True
        ) as response:
            if response.status_code != 201:
                response.failure(f"authorise: {response.status_code}")
                return None
            return str(response.json()["id"])


class RushHour(LoadTestShape):
    """Users over ``LOADTEST_DURATION`` seconds, peaking at ``LOADTEST_USERS``.

    ``LOADTEST_SHAPE=rush`` (default): off-peak at 30% for the first 15% of the time, a ramp to
    the peak over the next 15%, the peak for 40%, down to 40% over 15%, and 40% to the end
    (a morning rush hour, compressed). ``flat``: every user from the start (the smoke test).
    """

    def __init__(self) -> None:
        super().__init__()
        self.users = int(os.environ.get("LOADTEST_USERS", "30"))
        self.duration = float(os.environ.get("LOADTEST_DURATION", "180"))
        self.flat = os.environ.get("LOADTEST_SHAPE", "rush") == "flat"
        self.spawn_rate = max(1.0, self.users / 5)

    def level(self, t: float) -> float:
        if self.flat:
            return 1.0
        x = t / self.duration
        if x < 0.15:
            return 0.3
        if x < 0.30:
            return 0.3 + 0.7 * (x - 0.15) / 0.15
        if x < 0.70:
            return 1.0
        if x < 0.85:
            return 1.0 - 0.6 * (x - 0.70) / 0.15
        return 0.4

    def tick(self) -> tuple[int, float] | None:
        t = self.get_run_time()
        if t >= self.duration:
            return None
        return max(1, round(self.users * self.level(t))), self.spawn_rate
