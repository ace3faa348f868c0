"""Video link tokens: unguessable, tamper-evident, derivable only with the key (R-B1)."""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.diary.links import LinkSigner, LinkState, is_available

KEY = "k" * 40
signer = LinkSigner(KEY, "https://video.example.org/")


def test_token_round_trips_and_url_uses_the_public_address() -> None:
    link_id = uuid.uuid4()
    token = signer.token(link_id)
    assert signer.link_id(token) == link_id
    assert signer.url(link_id) == f"https://video.example.org/v/{token}"
    # R-B1: 16 bytes of link id + 16 bytes (128 bits) of MAC, URL-safe, no padding.
    assert len(token) == 43
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_each_link_id_gives_a_different_token() -> None:
    tokens = {signer.token(uuid.uuid4()) for _ in range(200)}
    assert len(tokens) == 200


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0, max_value=42), data=st.data())
def test_any_changed_character_is_refused(position: int, data: st.DataObject) -> None:
    # R-B1: tampering with any character of a real token never opens a link.
    token = signer.token(uuid.UUID(int=12345))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != token[position]]))
    tampered = token[:position] + replacement + token[position + 1 :]
    assert signer.link_id(tampered) is None


def test_guessed_tokens_are_refused() -> None:
    for _ in range(500):
        guess = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        assert signer.link_id(guess) is None


def test_a_known_link_id_without_the_key_gives_no_valid_token() -> None:
    # R-B1: someone with a copy of the database knows the link ids, not the key.
    link_id = uuid.uuid4()
    other_key = LinkSigner("another-secret-key-of-enough-length!!", "https://video.example.org")
    assert signer.link_id(other_key.token(link_id)) is None
    unsigned = base64.urlsafe_b64encode(link_id.bytes + bytes(16)).rstrip(b"=").decode()
    assert signer.link_id(unsigned) is None


@pytest.mark.parametrize(
    "token",
    ["", "abc", "x" * 42, "x" * 44, "é" * 43, "!" * 43, "=" * 43, "A" * 43],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert signer.link_id(token) is None


def test_non_canonical_spelling_of_a_valid_token_is_refused() -> None:
    token = signer.token(uuid.uuid4())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # The last character carries 4 data bits and 2 padding bits: 3 other spellings decode
    # to the same bytes. Only the issued spelling opens the link.
    index = alphabet.index(token[-1])
    siblings = [alphabet[(index & ~3) | low] for low in range(4)]
    for sibling in siblings:
        spelled = token[:-1] + sibling
        assert base64.urlsafe_b64decode(spelled + "=") == base64.urlsafe_b64decode(token + "=")
        assert (signer.link_id(spelled) is not None) == (spelled == token)


def test_a_signer_needs_a_key() -> None:
    with pytest.raises(ValueError):
        LinkSigner("", "https://x")


def test_availability_rules() -> None:
    # R-C6: ended, abandoned, cancelled (revoked) or past links are not available.
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    ends = now + timedelta(minutes=30)
    grace = timedelta(hours=2)
    assert is_available(LinkState.ACTIVE, "booked", ends, now, grace)
    for state in (LinkState.ENDED, LinkState.ABANDONED, LinkState.REVOKED):
        assert not is_available(state, "booked", ends, now, grace)
    assert not is_available(LinkState.ACTIVE, "cancelled", ends, now, grace)
    assert is_available(LinkState.ACTIVE, "booked", now - grace, now, grace)
    assert not is_available(
        LinkState.ACTIVE, "booked", now - grace - timedelta(seconds=1), now, grace
    )
