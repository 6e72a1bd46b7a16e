"""The `DUKASYNC` setting, with defaults.

    DUKASYNC = {
        "URL": "http://127.0.0.1:8080",     # the dukasync server, for the consumer and the client
        "TOKEN": "dks_...",                  # a backend token for the consumer (`dukasync token issue`)
        "DATABASE": "default",               # the Django database alias holding dukasync's schema
        "JWT": {                             # the sync-token view (protocol §3.2, the server's DUKASYNC_JWT_*)
            "SECRET": "...",                 # = DUKASYNC_JWT_HS256_SECRET, at least 32 bytes
            "AUDIENCE": "dukasync",          # = DUKASYNC_JWT_AUDIENCE
            "ISSUER": None,                  # = DUKASYNC_JWT_ISSUER, if the server sets one
            "LIFETIME_SECS": 900,            # 1 to 3600: at most the server's DUKASYNC_JWT_MAX_LIFETIME_SECS
        },
    }
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_JWT_DEFAULTS: dict[str, Any] = {
    "ISSUER": None,
    "LIFETIME_SECS": 900,
}
# The server's default DUKASYNC_JWT_MAX_LIFETIME_SECS (protocol §3.2): a longer token would be refused by it.
MAX_LIFETIME_SECS = 3600


def setting(name: str, default: Any = None) -> Any:
    return getattr(settings, "DUKASYNC", {}).get(name, default)


def required(name: str) -> Any:
    value = setting(name)
    if value in (None, ""):
        raise ImproperlyConfigured(f'settings.DUKASYNC["{name}"] is required')
    return value


def database() -> str:
    return str(setting("DATABASE", "default"))


def jwt_settings() -> dict[str, Any]:
    merged = {**_JWT_DEFAULTS, **(setting("JWT") or {})}
    for name in ("SECRET", "AUDIENCE"):
        if not merged.get(name):
            raise ImproperlyConfigured(f'settings.DUKASYNC["JWT"]["{name}"] is required')
    if len(str(merged["SECRET"]).encode()) < 32:
        raise ImproperlyConfigured('settings.DUKASYNC["JWT"]["SECRET"] must be at least 32 bytes')
    lifetime = merged["LIFETIME_SECS"]
    if not isinstance(lifetime, int) or not 0 < lifetime <= MAX_LIFETIME_SECS:
        raise ImproperlyConfigured(
            f'settings.DUKASYNC["JWT"]["LIFETIME_SECS"] must be an integer from 1 to {MAX_LIFETIME_SECS}'
        )
    return merged
