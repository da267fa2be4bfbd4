"""Secrets encrypted at rest (apps/common/crypto.py): authenticated, keyed from
the settings, rotated by a list of keys."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from apps.common import crypto
from apps.common.crypto import (
    SecretDecryptError,
    secret_decrypt,
    secret_encrypt,
    secret_is_current,
    secret_reencrypt,
)

OLD = "old-" + secrets.token_urlsafe(50)
NEW = "new-" + secrets.token_urlsafe(50)


def _keys(settings: Any, *keys: str) -> None:
    settings.CDP = {**settings.CDP, "SECRETS_KEYS": list(keys)}


@hsettings(max_examples=60, deadline=None)
@given(plain=st.text(max_size=300))
def test_any_text_comes_back_as_it_went_in(plain: str) -> None:
    token = secret_encrypt(plain)
    assert token.isascii()
    assert secret_decrypt(token) == plain


def test_a_token_holds_nothing_of_the_secret_and_differs_each_time() -> None:
    # given a webhook-style secret
    raw = secrets.token_bytes(32)
    secret = "whsec_" + base64.b64encode(raw).decode()
    # when it is encrypted twice
    one, two = secret_encrypt(secret), secret_encrypt(secret)
    # then neither token shows it, in any of its spellings, and they differ (random IV)
    for token in (one, two):
        assert secret not in token
        assert secret.removeprefix("whsec_") not in token
        assert raw.hex() not in token
    assert one != two
    assert secret_decrypt(one) == secret_decrypt(two) == secret


def test_an_altered_token_is_refused_not_decrypted_into_something_else() -> None:
    token = secret_encrypt("whsec_c2VjcmV0")
    # flip one character in the middle (the ciphertext) and the last (the MAC)
    for at in (len(token) // 2, len(token) - 2):
        altered = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
        with pytest.raises(SecretDecryptError):
            secret_decrypt(altered)
    with pytest.raises(SecretDecryptError):
        secret_decrypt("not a token at all")


def test_a_wrong_key_is_a_clear_error_naming_the_setting(settings: Any) -> None:
    # given a token made under one key
    _keys(settings, OLD)
    token = secret_encrypt("whsec_c2VjcmV0")
    # when the configured key is another one
    _keys(settings, NEW)
    # then the error says which setting, how many keys, and what to do
    with pytest.raises(SecretDecryptError) as caught:
        secret_decrypt(token)
    message = str(caught.value)
    assert "any of the 1 keys in CDP_SECRETS_KEY" in message
    assert "Put the key it was encrypted with back into CDP_SECRETS_KEY" in message
    # and nothing of the keys is in it
    assert OLD not in message and NEW not in message


def test_unset_the_key_is_derived_from_secret_key_and_follows_it(settings: Any) -> None:
    # given no CDP_SECRETS_KEY
    _keys(settings)
    token = secret_encrypt("whsec_c2VjcmV0")
    assert secret_decrypt(token) == "whsec_c2VjcmV0"
    # when SECRET_KEY changes, the derived key changes with it
    settings.SECRET_KEY = "another-" + secrets.token_urlsafe(40)
    with pytest.raises(SecretDecryptError) as caught:
        secret_decrypt(token)
    assert "derived from SECRET_KEY (CDP_SECRETS_KEY is not set)" in str(caught.value)


def test_rotation_the_first_key_encrypts_every_key_decrypts(settings: Any) -> None:
    # given a token under the old key
    _keys(settings, OLD)
    old_token = secret_encrypt("whsec_b2xk")
    assert secret_is_current(old_token)
    # when a new key is put first
    _keys(settings, NEW, OLD)
    # then the old token still decrypts but is not current, new tokens use the new key
    assert secret_decrypt(old_token) == "whsec_b2xk"
    assert not secret_is_current(old_token)
    new_token = secret_encrypt("whsec_bmV3")
    assert secret_is_current(new_token)
    # and re-encrypting moves the old one under the new key
    fresh = secret_reencrypt(old_token)
    assert secret_is_current(fresh)
    # so the old key can go
    _keys(settings, NEW)
    assert secret_decrypt(fresh) == "whsec_b2xk"
    assert secret_decrypt(new_token) == "whsec_bmV3"
    with pytest.raises(SecretDecryptError):
        secret_decrypt(old_token)
    with pytest.raises(SecretDecryptError):
        secret_reencrypt(old_token)


def test_empty_entries_and_spaces_around_keys_are_ignored(settings: Any) -> None:
    # CDP_SECRETS_KEY="new, old" names the old key, not " old"
    _keys(settings, OLD)
    token = secret_encrypt("whsec_c2VjcmV0")
    _keys(settings, "", f"{NEW} ", f" {OLD}")
    assert crypto.secrets_keys() == (NEW, OLD)
    assert secret_decrypt(token) == "whsec_c2VjcmV0"
