"""The client tests call the same real server the serving conformance tests use."""

from tests.serving.conftest import conformance_server, exports  # noqa: F401 - fixtures
