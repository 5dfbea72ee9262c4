"""A Sentinel-managed connection that asks where the primary is at every reconnection, retries included.

redis-py's ``SentinelManagedConnection`` asks the sentinels only in ``connect()``. A connection that
loses its socket in the middle of a command is reconnected by the command's retry through
``send_packed_command`` -> ``connect_check_health`` -> ``_connect``, which dials the address it had:
after a failover, the dead primary. redis-py retries that for as long as the connection's ``Retry``
lasts, and a worker's ``PatientRetry`` lasts until Redis is back, so the worker dialled the killed
primary for good while the sentinels named the new one (the N6 fault test, once in CI: "Error 111
connecting to <old primary>" a minute after every sentinel logged ``+switch-master``). The upstream
report is redis/redis-py#3874 (open; fix proposed in #3875); checked against redis-py 8.2.0.

Here ``_connect``, the one place a socket is made, takes the primary's address from the sentinels
first. A new connection asks them twice (``connect()`` asks too): one more ``SENTINEL MASTERS`` per
connection, which lives for the worker's life. tests/test_sentinel_connection.py shows redis-py's own
class dialling the old address on that path, so that an upgrade that fixes it is noticed there.
"""

from __future__ import annotations

import socket

from redis.sentinel import SentinelManagedConnection


class PrimaryFollowingConnection(SentinelManagedConnection):
    """A connection to a Sentinel-managed primary that reconnects to wherever the primary now is."""

    def _connect(self) -> socket.socket:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()
