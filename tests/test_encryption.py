"""The master key: from STRIPE_REPORTS_SECRET (key or passphrase) or a private key file."""

from __future__ import annotations

import stat
import threading
import traceback
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from engine.encryption import KeyCipher, MasterKeyError, WrongMasterKey, derive_key
from engine.settings import Settings

SECRET_KEY = "sk_test_51SentinelEncryptionKey0000abcd"


def make_settings(home: Path, secret: str | None = None) -> Settings:
    return Settings(
        home=home,
        warehouse_path=home / "warehouse.duckdb",
        connections_url=f"sqlite:///{home / 'connections.db'}",
        secret=secret,
        api_base="http://127.0.0.1:1",
        dagster_home=home / "dagster_home",
        alert_webhook_url=None,
    )


def test_a_fernet_key_in_the_setting_is_used_as_is(tmp_path: Path) -> None:
    key = Fernet.generate_key()
    cipher = KeyCipher.from_settings(make_settings(tmp_path, key.decode()))

    token = cipher.encrypt(SECRET_KEY)

    assert SECRET_KEY not in token
    assert Fernet(key).decrypt(token.encode()).decode() == SECRET_KEY
    assert not (tmp_path / "master.key").exists()  # the setting wins over a key file


def test_a_passphrase_gives_the_same_key_in_every_process(tmp_path: Path) -> None:
    saved_by = KeyCipher.from_settings(make_settings(tmp_path, "correct horse battery staple"))
    read_by = KeyCipher.from_settings(make_settings(tmp_path, " correct horse battery staple\n"))

    assert read_by.decrypt(saved_by.encrypt(SECRET_KEY)) == SECRET_KEY


def test_passphrase_derivation_is_pinned() -> None:
    # Changing the KDF, its parameters or its salt would make every stored key unreadable.
    assert derive_key("correct horse battery staple") == (
        b"cpGQEmAj3nw9oYjc3c06CcMSBbP-YKwrWkgPz8F0gNs="
    )


def test_another_master_key_gives_a_clear_error_without_the_ciphertext(tmp_path: Path) -> None:
    token = KeyCipher.from_settings(make_settings(tmp_path, "first secret")).encrypt(SECRET_KEY)
    other = KeyCipher.from_settings(make_settings(tmp_path, "second secret"))

    with pytest.raises(WrongMasterKey) as raised:
        other.decrypt(token)

    message = str(raised.value)
    assert "encrypted with another STRIPE_REPORTS_SECRET" in message
    assert "stripe-reports connect" in message
    printed = "".join(traceback.format_exception(raised.value))
    assert token not in printed and SECRET_KEY not in printed
    assert "InvalidToken" not in printed  # no chained Fernet traceback


def test_key_file_is_created_private_in_a_new_home(tmp_path: Path) -> None:
    home = tmp_path / "not-yet" / ".stripe-reports"
    settings = make_settings(home)

    token = KeyCipher.from_settings(settings).encrypt(SECRET_KEY)

    key_file = home / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) & 0o077 == 0
    assert KeyCipher.from_settings(settings).decrypt(token) == SECRET_KEY  # same key next time
    assert [path.name for path in home.iterdir()] == ["master.key"]  # no temporary left over


def test_processes_starting_together_agree_on_one_key_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    ciphers: list[KeyCipher] = []
    start = threading.Barrier(8)

    def open_cipher() -> None:
        start.wait()
        ciphers.append(KeyCipher.from_settings(settings))

    threads = [threading.Thread(target=open_cipher) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    token = ciphers[0].encrypt(SECRET_KEY)
    assert len(ciphers) == 8
    assert all(cipher.decrypt(token) == SECRET_KEY for cipher in ciphers)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    KeyCipher.from_settings(settings)
    settings.key_file.chmod(0o644)

    with pytest.raises(MasterKeyError, match="chmod 600"):
        KeyCipher.from_settings(settings)


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.key_file.write_text("not a key\n")
    settings.key_file.chmod(0o600)

    with pytest.raises(MasterKeyError, match="does not hold a Fernet key"):
        KeyCipher.from_settings(settings)


def test_the_cipher_never_shows_its_key(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    cipher = KeyCipher.from_settings(make_settings(tmp_path, key))

    assert key not in repr(cipher) and key not in str(cipher)
    assert "STRIPE_REPORTS_SECRET" in repr(cipher)
