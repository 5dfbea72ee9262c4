"""Who may use the web process: credentials from the environment, or generated once and kept private.

``RQ_DASHBOARD_USERNAME`` / ``RQ_DASHBOARD_PASSWORD`` win when set (both, or neither). Otherwise the
first start generates a random password for the user ``volfefe`` and keeps both in
``<data_dir>/web/credentials`` (mode 0600 in a 0700 folder); the caller shows them once.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings
from errors import VolfefeError
from services.redis_server import make_private_dir

#: the user name of generated credentials.
GENERATED_USERNAME = "volfefe"
#: random bytes in a generated password (bytes; printed as URL-safe base64, 32 characters).
GENERATED_PASSWORD_BYTES = 24
#: the web process's folder inside the data directory (folder name).
WEB_DIR_NAME = "web"
#: the file that keeps generated credentials, mode 0600 (file name).
CREDENTIALS_FILE_NAME = "credentials"


class CredentialsError(VolfefeError):
    """The credentials settings are half set, or the credentials file cannot be trusted."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password for HTTP basic auth; the password never appears in ``repr``."""

    username: str
    password: str = field(repr=False)

    def match(self, username: str | None, password: str | None) -> bool:
        """True when both are given and equal ours (compared in constant time)."""
        if username is None or password is None:
            return False
        same_user = hmac.compare_digest(username.encode(), self.username.encode())
        same_password = hmac.compare_digest(password.encode(), self.password.encode())
        return same_user and same_password


def from_environment(config: Settings) -> Credentials | None:
    """The credentials set in the environment, None when neither is set; CredentialsError when one is."""
    if config.web_username and config.web_password:
        return Credentials(config.web_username, config.web_password)
    if config.web_username or config.web_password:
        missing = "RQ_DASHBOARD_PASSWORD" if config.web_username else "RQ_DASHBOARD_USERNAME"
        raise CredentialsError(
            f"{missing} is not set: set both RQ_DASHBOARD_USERNAME and RQ_DASHBOARD_PASSWORD, or neither"
        )
    return None


def credentials_file(data_dir: Path) -> Path:
    """Where generated credentials are kept."""
    return data_dir / WEB_DIR_NAME / CREDENTIALS_FILE_NAME


def generated(data_dir: Path) -> tuple[Credentials, bool]:
    """The kept generated credentials, made on first use; the flag is True when they were just made.

    Two processes starting at once end up with the same credentials: the file is linked into
    place only if it does not exist yet.
    """
    path = credentials_file(data_dir)
    folder = make_private_dir(path.parent)
    path = folder / path.name
    if path.exists():
        return _read(path), False
    credentials = Credentials(GENERATED_USERNAME, secrets.token_urlsafe(GENERATED_PASSWORD_BYTES))
    temporary = folder / f".{path.name}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"username": credentials.username, "password": credentials.password}, handle)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return _read(path), False
    finally:
        temporary.unlink()
    return credentials, True


def _read(path: Path) -> Credentials:
    status = path.lstat()
    if status.st_uid != os.geteuid() or status.st_mode & 0o077 or not path.is_file() or path.is_symlink():
        raise CredentialsError(
            f"{path} may have been read by others (owner uid {status.st_uid}, mode {status.st_mode & 0o777:o}): "
            "delete it to generate new credentials"
        )
    try:
        data = json.loads(path.read_text())
    except ValueError:
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(key), str) and data[key] for key in ("username", "password")
    ):
        raise CredentialsError(f"{path} does not hold credentials: delete it to generate new ones")
    return Credentials(data["username"], data["password"])
