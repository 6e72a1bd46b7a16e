"""The sync-token view issues an HS256 JWT for the logged-in Django user with the claims the server checks
(protocol §3.2 as being written in the identity work: `sub`, `aud`, `exp`, `iat`, `device`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from django.contrib.auth.models import User
from django.test import Client as BrowserClient

from dukasync import Client, DukasyncError, Outbox


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


def test_a_token_from_the_view_lets_a_device_pull_and_push(
    server_url: str, dukasync_cli: Callable[..., str]
) -> None:
    """The whole sign-in path of the PWA: log in to Django, POST the view, sync with the JWT it answers. The
    Django user is linked to a dukasync user once (`user-add --external-id <pk>`, protocol §3.2); the server,
    not the token, decides the role."""
    user = User.objects.create_user(f"wanjiru-{uuid.uuid4().hex[:6]}", password="pw-for-tests")
    dukasync_cli("user-add", "--email", f"{user.username}@duka.test", "--name", "Wanjiru", "--scope", "water",
                 "--role", "cashier", "--external-id", str(user.pk))
    browser = BrowserClient()
    assert browser.login(username=user.username, password="pw-for-tests")
    body = browser.post("/dukasync/token", {"device": f"pwa-{uuid.uuid4()}"}).json()

    with Client(server_url, body["token"]) as device:
        assert device.changes("water", "0", limit=1)["changes"]
        outbox = Outbox("water")
        key = f"py-jwt-{uuid.uuid4().hex[:6]}"
        outbox.put("customers", key, {"name": "Kamau"})
        assert outbox.send(device)["results"][0]["status"] == "applied"
        # A scope where this user has no role stays invisible, as for a device token (§3).
        with pytest.raises(DukasyncError) as hidden:
            device.changes("laundry", "0")
        assert hidden.value.code == "scope_not_found"


def test_a_lifetime_the_server_would_refuse_is_a_configuration_error() -> None:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from dukasync.django.views import issue_token

    conf: dict[str, Any] = settings.DUKASYNC
    with override_settings(DUKASYNC={**conf, "JWT": {**conf["JWT"], "LIFETIME_SECS": 3601}}):
        with pytest.raises(ImproperlyConfigured, match="LIFETIME_SECS"):
            issue_token("1", "till-7")
