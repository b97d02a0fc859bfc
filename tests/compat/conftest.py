"""The executor tests' `make_store` fixture (memory and SQLite) for the PyErgon API tests."""

from tests.executor.conftest import make_store  # noqa: F401 (a fixture)
