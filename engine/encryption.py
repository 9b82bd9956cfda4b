"""The master key that encrypts stored Stripe secret keys, and the cipher built on it.

The master key comes from `STRIPE_REPORTS_SECRET` or, when that is unset, from a key
file (`$STRIPE_REPORTS_HOME/master.key`) created on first use with mode 0600.

`STRIPE_REPORTS_SECRET` may be a Fernet key (`Fernet.generate_key()`, 44 url-safe
base64 characters), used as-is, or any passphrase, from which a Fernet key is derived
with scrypt (n=2**14, r=8, p=1) and the fixed salt `_PASSPHRASE_SALT`. The salt is fixed
on purpose: the same passphrase must give the same key on every machine and every run,
so that keys stored by one process can be read by another.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from engine.settings import Settings

# Changing any of these makes every stored key unreadable: they are part of the format.
_PASSPHRASE_SALT = b"stripe-reports/connection-store/v1"
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]=")


class MasterKeyError(RuntimeError):
    """The master key is missing, malformed or unsafe; the message says what to do."""


class WrongMasterKey(MasterKeyError):
    """A stored key cannot be decrypted with this process's master key."""


def _is_fernet_key(value: str) -> bool:
    # 32 bytes in url-safe base64 are 43 characters and one "=" of padding.
    return _FERNET_KEY.fullmatch(value) is not None


@functools.lru_cache(maxsize=8)  # scrypt is slow on purpose; every store opened would pay it
def derive_key(passphrase: str) -> bytes:
    """A Fernet key from a passphrase: scrypt with the documented fixed salt."""
    kdf = Scrypt(salt=_PASSPHRASE_SALT, length=32, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return base64.urlsafe_b64encode(kdf.derive(passphrase.encode("utf-8")))


def _check_private(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise MasterKeyError(
            f"The key file {path} can be read or written by other users (mode {mode:o}); it "
            f"guards every stored Stripe key. Run `chmod 600 {path}` (and check who may have "
            "read it), or set STRIPE_REPORTS_SECRET instead."
        )


def _read_key_file(path: Path) -> bytes:
    _check_private(path)
    key = path.read_text(encoding="ascii", errors="replace").strip()
    if not _is_fernet_key(key):
        raise MasterKeyError(
            f"The key file {path} does not hold a Fernet key (44 url-safe base64 characters). "
            "Restore it from a backup, or set STRIPE_REPORTS_SECRET to the master key the stored "
            "Stripe keys were saved with."
        )
    return key.encode("ascii")


def _create_key_file(path: Path) -> bytes:
    """Write a new key to a private temporary file, then link it into place.

    Linking fails if the file already exists, so two processes starting at once agree on
    one key, and no reader ever sees a half-written file.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Fernet.generate_key()
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return _read_key_file(path)
    finally:
        temporary.unlink(missing_ok=True)
    return key


def load_key_file(path: Path) -> bytes:
    """The master key in `path`, created (mode 0600) if there is none yet."""
    if path.exists():
        return _read_key_file(path)
    return _create_key_file(path)


class KeyCipher:
    """Encrypts and decrypts stored Stripe keys with the master key (Fernet: AES + HMAC)."""

    __slots__ = ("_fernet", "_root", "source")

    def __init__(self, key: bytes | str, source: str = "a master key") -> None:
        self._fernet = Fernet(key)
        self._root = hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()
        self.source = source  # said in errors: which master key this process used

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyCipher:
        secret = (settings.secret or "").strip()
        if secret:
            key = secret.encode("ascii") if _is_fernet_key(secret) else derive_key(secret)
            return cls(key, source="STRIPE_REPORTS_SECRET")
        key_file = settings.key_file
        return cls(load_key_file(key_file), source=f"the key file {key_file}")

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            # `from None`: the traceback must not carry the ciphertext or Fernet internals.
            raise WrongMasterKey(
                "The stored keys were encrypted with another STRIPE_REPORTS_SECRET (or key file) "
                f"than this process uses ({self.source}). Set STRIPE_REPORTS_SECRET to the master "
                "key they were saved with, or connect the client again with "
                "`stripe-reports connect CLIENT`."
            ) from None

    def derive(self, purpose: str) -> bytes:
        """A key for another use (signing share links, sessions), derived from the master
        key: it never reveals the master key, and changing the master key changes it."""
        return hmac.new(self._root, purpose.encode(), hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"KeyCipher(source={self.source!r})"
