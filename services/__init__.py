"""Helper services the project runs as local processes (e.g. an embedded redis-server)."""
