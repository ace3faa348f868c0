"""Practice, users, clients and appointment types: roles, isolation and bad input."""

from __future__ import annotations

import uuid

import pytest

from tests.support import ApiClient, PracticeFixture, login_as

ROLES = ("site_admin", "clinician", "receptionist")


# (method, path template, body, roles allowed). {other} is filled per test.
ACTIONS: list[tuple[str, str, dict[str, object] | None, set[str]]] = [
    ("PATCH", "/api/practice", {"name": "Renamed"}, {"site_admin"}),
    (
        "POST",
        "/api/users",
        {
            "email": "new-{n}@example.test",
            "name": "New",
            "password": "long-enough-pw",
            "roles": ["clinician"],
        },
        {"site_admin"},
    ),
    ("PATCH", "/api/users/{clinician}", {"name": "Dr Renamed"}, {"site_admin"}),
    (
        "POST",
        "/api/appointment-types",
        {"name": "Long video", "duration_minutes": 90, "is_video": True},
        {"site_admin"},
    ),
    ("PATCH", "/api/appointment-types/{type}", {"duration_minutes": 45}, {"site_admin"}),
    ("POST", "/api/clients", {"name": "Nina New"}, set(ROLES)),
    ("PATCH", "/api/clients/{client}", {"phone": "07700 900999"}, set(ROLES)),
    ("GET", "/api/practice", None, set(ROLES)),
    ("GET", "/api/users", None, set(ROLES)),
    ("GET", "/api/clients?q=casey", None, set(ROLES)),
    ("GET", "/api/appointment-types", None, set(ROLES)),
]


@pytest.mark.parametrize("role", ROLES)
async def test_each_role_allowed_and_refused(
    client: ApiClient, practice: PracticeFixture, role: str
) -> None:
    headers = await login_as(client, practice, role)
    for n, (method, template, body, allowed) in enumerate(ACTIONS):
        path = template.format(
            clinician=practice.clinician.id, type=practice.video_type.id, client=practice.client.id
        )
        payload = None
        if body is not None:
            payload = {
                k: (v.format(n=f"{role}{n}") if isinstance(v, str) else v) for k, v in body.items()
            }
        response = await client.request(method, path, json=payload, headers=headers)
        if role in allowed:
            assert response.status in (200, 201), (method, path, await response.text())
        else:
            assert response.status == 403, (method, path, role)
            error = (await response.json())["error"]
            assert error["code"] == "forbidden_role"
            assert "only a site admin" in error["message"]


async def test_other_practice_data_is_not_found(
    client: ApiClient, practice: PracticeFixture, other_practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "site_admin")
    other = other_practice
    reads = [
        f"/api/users/{other.clinician.id}",
        f"/api/clients/{other.client.id}",
        f"/api/users/{uuid.uuid4()}",
    ]
    for path in reads:
        response = await client.get(path, headers=headers)
        assert response.status == 404, path
    writes = [
        (f"/api/users/{other.clinician.id}", {"name": "Hijacked"}),
        (f"/api/clients/{other.client.id}", {"name": "Hijacked"}),
        (f"/api/appointment-types/{other.video_type.id}", {"name": "Hijacked"}),
    ]
    for path, body in writes:
        response = await client.patch(path, json=body, headers=headers)
        assert response.status == 404, path
    # Lists show only this practice's rows.
    users = await (await client.get("/api/users", headers=headers)).json()
    assert {u["practice_id"] for u in users} == {str(practice.id)}
    clients = await (await client.get("/api/clients", headers=headers)).json()
    assert str(other.client.id) not in {c["id"] for c in clients}
    # And nothing of the other practice changed.
    other_headers = await login_as(client, other, "site_admin")
    response = await client.get(f"/api/users/{other.clinician.id}", headers=other_headers)
    seen = await response.json()
    assert seen["name"] == other.clinician.name


async def test_admin_cannot_remove_own_admin_role(
    client: ApiClient, practice: PracticeFixture
) -> None:
    headers = await login_as(client, practice, "site_admin")
    response = await client.patch(
        f"/api/users/{practice.admin.id}", json={"roles": ["clinician"]}, headers=headers
    )
    assert response.status == 409


async def test_duplicate_email_is_a_conflict(client: ApiClient, practice: PracticeFixture) -> None:
    headers = await login_as(client, practice, "site_admin")
    body = {
        "email": practice.clinician.email,
        "name": "Twin",
        "password": "long-enough-pw",
        "roles": ["clinician"],
    }
    response = await client.post("/api/users", json=body, headers=headers)
    assert response.status == 409
    assert (await response.json())["error"]["field"] == "email"


@pytest.mark.parametrize(
    ("path", "raw", "status", "field"),
    [
        ("/api/clients", b"{not json", 400, None),
        ("/api/clients", b"", 400, None),
        ("/api/clients", b'{"name": 42}', 400, "name"),
        ("/api/clients", b'{"name": "A", "shoe_size": 9}', 400, "shoe_size"),
        ("/api/clients", b'{"name": ""}', 400, "name"),
        ("/api/clients", b'{"name": "A", "email": "no-at-sign"}', 400, "email"),
        ("/api/clients", b"[]", 400, None),
        ("/api/clients", b"{}", 400, "name"),
        (
            "/api/users",
            b'{"email": "a@b.c", "name": "A", "password": "long-enough-pw", "roles": ["owner"]}',
            400,
            "roles[0]",
        ),
        (
            "/api/users",
            b'{"email": "a@b.c", "name": "A", "password": "short", "roles": ["clinician"]}',
            400,
            "password",
        ),
        (
            "/api/appointment-types",
            b'{"name": "T", "duration_minutes": "50"}',
            400,
            "duration_minutes",
        ),
        (
            "/api/appointment-types",
            b'{"name": "T", "duration_minutes": 0}',
            400,
            "duration_minutes",
        ),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    client: ApiClient,
    practice: PracticeFixture,
    path: str,
    raw: bytes,
    status: int,
    field: str | None,
) -> None:
    headers = await login_as(client, practice, "site_admin")
    headers = {**headers, "Content-Type": "application/json"}
    before = await (await client.get("/api/clients", headers=headers)).json()
    response = await client.post(path, data=raw, headers=headers)
    assert response.status == status, await response.text()
    error = (await response.json())["error"]
    if field is not None:
        assert error["field"] == field
    after = await (await client.get("/api/clients", headers=headers)).json()
    assert after == before


async def test_bad_timezone_is_refused(client: ApiClient, practice: PracticeFixture) -> None:
    headers = await login_as(client, practice, "site_admin")
    response = await client.patch(
        "/api/practice", json={"timezone": "Mars/Olympus"}, headers=headers
    )
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "timezone"


async def test_oversized_body_is_413(client: ApiClient, practice: PracticeFixture) -> None:
    headers = await login_as(client, practice, "site_admin")
    huge = b'{"name": "' + b"a" * (200 * 1024) + b'"}'
    response = await client.post(
        "/api/clients", data=huge, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "body_too_large"


async def test_malformed_ids_are_404_not_500(client: ApiClient, practice: PracticeFixture) -> None:
    headers = await login_as(client, practice, "site_admin")
    for path in ("/api/users/not-a-uuid", "/api/clients/1", "/api/nowhere"):
        response = await client.get(path, headers=headers)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    wrong_method = await client.delete("/api/practice", headers=headers)
    assert wrong_method.status == 405
