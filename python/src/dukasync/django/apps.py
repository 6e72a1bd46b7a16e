from django.apps import AppConfig


class DukasyncConfig(AppConfig):
    name = "dukasync.django"
    # "django" would clash with Django's own app labels.
    label = "dukasync"
    verbose_name = "dukasync"
    default_auto_field = "django.db.models.BigAutoField"
