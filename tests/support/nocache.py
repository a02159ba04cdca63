"""What a unit test's double of :class:`cognito_fdw.client.Pool` lacks to stand for one
with the shared cache off (``cache_ttl 0``; outside a backend there is none anyway)."""

from __future__ import annotations


class NoCache:
    """Mixin: nothing is recalled or kept; a stream is read as it is."""

    cache_ttl = 0.0

    def recall(self, stats, operation, request):
        return None

    def cached_age(self, operation, request):
        return None

    def remember(self, operation, request, value):
        pass

    def remembered(self, stats, operation, request, live, rows=False):
        yield from live

    def uncached(self):
        return self
