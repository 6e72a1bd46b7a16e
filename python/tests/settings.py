"""Django settings for the tests: the ERP's stack in small, on the scratch database the server also uses."""

import os

SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_rq",
    "dukasync.django",
    "tests.erpapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DUKASYNC_TEST_DB_NAME", "dukasync"),
        "USER": os.environ.get("DUKASYNC_TEST_DB_USER", "dukasync"),
        "PASSWORD": os.environ.get("DUKASYNC_TEST_DB_PASSWORD", ""),
        "HOST": os.environ.get("DUKASYNC_TEST_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("DUKASYNC_TEST_DB_PORT", "5432"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DUKASYNC = {
    "URL": os.environ.get("DUKASYNC_TEST_URL", ""),
    "TOKEN": os.environ.get("DUKASYNC_TEST_TOKEN", ""),
    "JWT": {"SECRET": "tests-only-secret-of-at-least-32-bytes!", "AUDIENCE": "dukasync-tests"},
}
# Django-RQ, as the ERP runs it: the consumer job of docs/erp-guide.md §3 runs on a real worker in the tests.
RQ_QUEUES = {
    os.environ.get("DUKASYNC_TEST_RQ_QUEUE", "default"): {
        "URL": os.environ.get("DUKASYNC_TEST_RQ_URL") or "redis://127.0.0.1:6379/0",
        "DEFAULT_TIMEOUT": 120,
    }
}
