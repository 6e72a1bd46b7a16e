"""`sync_token`: a short-lived JWT for the logged-in Django user, which a device sends as its bearer token
(protocol §3.2: HS256 with the secret the server has as DUKASYNC_JWT_HS256_SECRET).

POST with form or JSON field `device` (the app's stable id for this installation, 1 to 128 bytes). Answers
`{"token", "expires_at", "url"}`; 401 if not logged in, 400 `invalid_device` without a usable device id.
Route it in your urls.py: `path("dukasync/token", sync_token)`; the Dexie client's credentials callback calls it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from dukasync.django.conf import jwt_settings, setting

MAX_DEVICE_BYTES = 128


def _device(request: HttpRequest) -> str:
    device = request.POST.get("device")
    if device is None and request.content_type == "application/json":
        try:
            body: Any = json.loads(request.body or b"{}")
        except ValueError:
            body = {}
        device = body.get("device") if isinstance(body, dict) else None
    return device if isinstance(device, str) else ""


def issue_token(subject: str, device: str, now: int | None = None) -> tuple[str, int]:
    """A signed token for `subject` on `device`, and its expiry in Unix seconds."""
    conf = jwt_settings()
    issued = int(time.time()) if now is None else now
    expires = issued + conf["LIFETIME_SECS"]
    # Exactly the claims of protocol §3.2; the server reads `sub` and `device` by these names only.
    claims: dict[str, Any] = {
        "sub": subject,
        "device": device,
        "aud": conf["AUDIENCE"],
        "iat": issued,
        "exp": expires,
    }
    if conf["ISSUER"]:
        claims["iss"] = conf["ISSUER"]
    return jwt.encode(claims, conf["SECRET"], algorithm="HS256"), expires


@require_POST
def sync_token(request: HttpRequest) -> JsonResponse:
    if not request.user.is_authenticated:
        return JsonResponse({"error": {"code": "unauthorized", "message": "log in first"}}, status=401)
    device = _device(request).strip()
    if not device or len(device.encode()) > MAX_DEVICE_BYTES:
        message = f"device: the app's id of this installation, 1 to {MAX_DEVICE_BYTES} bytes"
        return JsonResponse({"error": {"code": "invalid_device", "message": message}}, status=400)
    # The ERP's user id is the token's subject: the server maps it to its user (users.external_id).
    token, expires = issue_token(str(request.user.pk), device)
    return JsonResponse({"token": token, "expires_at": expires, "url": setting("URL")})
