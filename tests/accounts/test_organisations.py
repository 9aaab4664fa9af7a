"""Organisations: a business participant with owners and members."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from service.accounts.dependencies import AuthenticatedUser
from service.models import Participant
from tests.accounts.helpers import Registered, bearer, register

PROBLEMS = "https://carbon-points.dev/problems/"


async def _create(client: httpx.AsyncClient, owner: Registered, name: str = "绿色咖啡馆") -> str:
    response = await client.post(
        "/v1/app/organisations",
        json={"name": name, "region": "CN-JX"},
        headers=bearer(owner.access_token),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["organisation_id"])


async def _add(
    client: httpx.AsyncClient, by: Registered, organisation_id: str, login: str, role: str
) -> httpx.Response:
    return await client.post(
        f"/v1/app/organisations/{organisation_id}/members",
        json={"login": login, "role": role},
        headers=bearer(by.access_token),
    )


def _slug(response: httpx.Response) -> str:
    return str(response.json()["type"]).removeprefix(PROBLEMS)


async def test_create_organisation(client: httpx.AsyncClient, db: AsyncSession) -> None:
    owner = await register(client, display_name="Owner")
    response = await client.post(
        "/v1/app/organisations",
        json={"name": " 绿色咖啡馆 ", "region": "CN-JX"},
        headers=bearer(owner.access_token),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "绿色咖啡馆"
    assert body["participant_id"] == body["organisation_id"]
    assert body["your_role"] == "owner"
    assert [(m["user_id"], m["role"]) for m in body["members"]] == [(str(owner.user_id), "owner")]

    participant = await db.get(Participant, uuid.UUID(body["participant_id"]))
    assert participant is not None
    assert (participant.kind, participant.display_name) == ("business", "绿色咖啡馆")

    me = (await client.get("/v1/app/me", headers=bearer(owner.access_token))).json()
    assert me["organisations"] == [
        {"organisation_id": body["organisation_id"], "name": "绿色咖啡馆", "role": "owner"}
    ]


async def test_owner_adds_members(client: httpx.AsyncClient) -> None:
    owner = await register(client, display_name="Owner")
    member = await register(client, display_name="Barista", login="barista@example.com")
    co_owner = await register(client, display_name="Partner")
    organisation_id = await _create(client, owner)

    added = await _add(client, owner, organisation_id, "Barista@Example.com", "member")
    assert added.status_code == 201, added.text
    assert await _add(client, owner, organisation_id, co_owner.login, "owner")

    read = await client.get(
        f"/v1/app/organisations/{organisation_id}", headers=bearer(member.access_token)
    )
    assert read.status_code == 200, read.text
    assert read.json()["your_role"] == "member"
    assert sorted((m["display_name"], m["role"]) for m in read.json()["members"]) == [
        ("Barista", "member"),
        ("Owner", "owner"),
        ("Partner", "owner"),
    ]
    # A second owner may add members too.
    newcomer = await register(client)
    assert (
        await _add(client, co_owner, organisation_id, newcomer.login, "member")
    ).status_code == 201

    again = await _add(client, owner, organisation_id, member.login, "member")
    assert (again.status_code, _slug(again)) == (409, "already-a-member")
    nobody = await _add(client, owner, organisation_id, "13000000001", "member")
    assert (nobody.status_code, _slug(nobody)) == (404, "user-not-found")


async def test_members_cannot_add_and_strangers_cannot_see(client: httpx.AsyncClient) -> None:
    owner = await register(client)
    member = await register(client)
    stranger = await register(client)
    organisation_id = await _create(client, owner)
    assert (await _add(client, owner, organisation_id, member.login, "member")).status_code == 201

    by_member = await _add(client, member, organisation_id, stranger.login, "owner")
    assert (by_member.status_code, _slug(by_member)) == (403, "owner-required")
    by_stranger = await _add(client, stranger, organisation_id, stranger.login, "owner")
    assert (by_stranger.status_code, _slug(by_stranger)) == (403, "not-a-member")

    for path in (organisation_id, str(uuid.uuid4())):  # unknown looks like not-a-member
        read = await client.get(
            f"/v1/app/organisations/{path}", headers=bearer(stranger.access_token)
        )
        assert (read.status_code, _slug(read)) == (403, "not-a-member")
        assert "name" not in read.json()

    anonymous = await client.get(f"/v1/app/organisations/{organisation_id}")
    assert (anonymous.status_code, _slug(anonymous)) == (401, "token-missing")


async def test_authenticated_user_roles(client: httpx.AsyncClient, db: AsyncSession) -> None:
    owner = await register(client)
    member = await register(client)
    organisation_id = await _create(client, owner)
    await _add(client, owner, organisation_id, member.login, "member")
    org = uuid.UUID(organisation_id)

    as_owner = AuthenticatedUser(owner.user_id, owner.participant_id, "t")
    as_member = AuthenticatedUser(member.user_id, member.participant_id, "t")
    assert await as_owner.role_in(db, org) == "owner"
    assert await as_member.role_in(db, org) == "member"
    assert await as_member.role_in(db, uuid.uuid4()) is None
    assert await as_owner.require_role(db, org, "owner") == "owner"
    assert await as_member.may_act_for(db, org)
    assert await as_member.may_act_for(db, member.participant_id)
    assert not await as_member.may_act_for(db, owner.participant_id)
