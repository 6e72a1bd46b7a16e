from django.apps import AppConfig


class ErpAppConfig(AppConfig):
    name = "tests.erpapp"
    label = "erpapp"
