from tests.crediting.conftest import live

__all__ = ["live"]
