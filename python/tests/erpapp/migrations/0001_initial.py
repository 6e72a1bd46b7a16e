from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="MirroredChange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("scope", models.CharField(max_length=40)),
                ("version", models.BigIntegerField()),
                ("collection", models.CharField(max_length=100)),
                ("key", models.CharField(max_length=128)),
            ],
            options={"constraints": [models.UniqueConstraint(fields=("scope", "version"), name="mirrored_once")]},
        ),
        migrations.CreateModel(
            name="MirroredSale",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("scope", models.CharField(max_length=40)),
                ("key", models.CharField(max_length=128)),
                ("total", models.DecimalField(decimal_places=2, max_digits=20)),
                ("status", models.CharField(max_length=20)),
            ],
            options={"constraints": [models.UniqueConstraint(fields=("scope", "key"), name="mirrored_sale_once")]},
        ),
    ]
