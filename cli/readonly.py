"""What the read-only commands (``status``, ``report``) may touch: nothing they would have to start or create.

They use the embedded redis-server only when it already runs, and a SQLite database only when its
file exists (opening a missing one would create it, empty).
"""

from __future__ import annotations

from config import Settings


def running_redis_url(config: Settings) -> str | None:
    """``REDIS_URL`` when set, else the embedded server's URL if it is running now (never starts it)."""
    if config.redis_url:
        return config.redis_url
    from services.redis_connection import running_embedded_url

    return running_embedded_url(config.data_dir)
