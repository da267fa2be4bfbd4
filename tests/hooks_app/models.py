from django.db import models


class Written(models.Model):
    """One row per (what, key): a stage's or handler's own write."""

    what = models.CharField(max_length=100)
    key = models.CharField(max_length=100)
    seq = models.BigAutoField(primary_key=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["what", "key"], name="hooks_app_once")]

    def __str__(self) -> str:
        return f"{self.what} {self.key}"
