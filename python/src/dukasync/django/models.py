"""The consumer's cursor, kept in Django's database beside what it mirrors (see dukasync.consumer)."""

from __future__ import annotations

from django.db import models


class FeedCursor(models.Model):
    """Where the consumer `name` stands in the feed of `scope`: written in the transaction of each page."""

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=40)
    cursor = models.CharField(max_length=100)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["name", "scope"], name="dukasync_feed_cursor_once")]

    def __str__(self) -> str:
        return f"{self.name}@{self.scope}: {self.cursor}"
