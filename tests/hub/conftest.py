from tests.webhooks.conftest import client, hooks, receiver

__all__ = ["client", "hooks", "receiver"]
