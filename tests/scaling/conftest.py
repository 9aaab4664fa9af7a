"""The scaling tests drive the real app as the crediting tests do (`live`, `metro`)."""

from tests.crediting.conftest import Live, live, metro

__all__ = ["Live", "live", "metro"]
