from tests.support import ApiClient, PracticeFixture, login_as


async def test_login_and_me(client: ApiClient, practice: PracticeFixture) -> None:
    headers = await login_as(client, practice, "site_admin")
    response = await client.get("/api/me", headers=headers)
    assert response.status == 200
    body = await response.json()
    assert body["user"]["email"] == practice.admin.email
