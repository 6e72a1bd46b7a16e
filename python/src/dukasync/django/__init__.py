"""The dukasync Django app: add "dukasync.django" to INSTALLED_APPS and a `DUKASYNC` setting (see conf.py)."""
