"""The sync-token view issues an HS256 JWT for the logged-in Django user with the claims the server checks
(protocol §3.2 as being written in the identity work: `sub`, `aud`, `exp`, `iat`, `device`)."""

from __future__ import annotations

import uuid

import jwt
from django.contrib.auth.models import User
from django.test import Client as BrowserClient


def test_a_logged_in_user_gets_a_token_naming_them_and_the_device() -> None:
    user = User.objects.create_user(f"amina-{uuid.uuid4().hex[:6]}", password="pw-for-tests")
    browser = BrowserClient()
    assert browser.post("/dukasync/token", {"device": "till-7"}).status_code == 401
    browser.force_login(user)
    answer = browser.post("/dukasync/token", {"device": "till-7"})
    assert answer.status_code == 200, answer.content
    body = answer.json()
    claims = jwt.decode(
        body["token"], "tests-only-secret-of-at-least-32-bytes!", algorithms=["HS256"], audience="dukasync-tests"
    )
    assert (claims["sub"], claims["device"]) == (str(user.pk), "till-7")
    assert claims["exp"] == body["expires_at"] and claims["exp"] - claims["iat"] == 900
    assert browser.post("/dukasync/token", {"device": ""}).json()["error"]["code"] == "invalid_device"
    assert browser.get("/dukasync/token").status_code == 405
