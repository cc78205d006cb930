"""ASGI apps the integration tests serve: `osmium serve tests.integration.apps.<module>:app`."""
