"""What the ERP keeps: mirrored changes and sales (one row each, by unique constraints), and a read view."""

from django.db import models


class MirroredChange(models.Model):
    """One row per feed change handled: a change mirrored twice breaks the unique constraint."""

    scope = models.CharField(max_length=40)
    version = models.BigIntegerField()
    collection = models.CharField(max_length=100)
    key = models.CharField(max_length=128)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "version"], name="mirrored_once")]


class MirroredSale(models.Model):
    scope = models.CharField(max_length=40)
    key = models.CharField(max_length=128)
    total = models.DecimalField(max_digits=20, decimal_places=2)
    status = models.CharField(max_length=20)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="mirrored_sale_once")]


class ReadSale(models.Model):
    """`dukasync_read.sales` (docs/backend-read.md), read only. `id` is unique within a scope: filter by scope."""

    scope = models.TextField()
    id = models.TextField(primary_key=True)
    status = models.TextField()
    sold_at = models.DateTimeField()
    total = models.DecimalField(max_digits=20, decimal_places=2)
    version = models.BigIntegerField()

    class Meta:
        managed = False
        db_table = 'dukasync_read"."sales'


class ErpProduct(models.Model):
    """The ERP's own product table, as its Django app has it. conftest.py installs a capture trigger on it
    (`dukasync capture install --table erp_product ...`): plain ORM saves reach the `products` collection."""

    business = models.CharField(max_length=40)  # the dukasync scope id of the row
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2)
    active = models.BooleanField(default=True)

    class Meta:
        db_table = "erp_product"
