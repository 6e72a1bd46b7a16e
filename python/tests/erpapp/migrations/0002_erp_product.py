from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("erpapp", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="ErpProduct",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("business", models.CharField(max_length=40)),
                ("name", models.CharField(max_length=200)),
                ("price", models.DecimalField(decimal_places=2, max_digits=12)),
                ("active", models.BooleanField(default=True)),
            ],
            options={"db_table": "erp_product"},
        ),
    ]
