"""The fingerprint stage's fast paths give what the plain definitions they replace give.

The stage computes datasketch's MinHash with numpy on the hash array, cuts word tokens from
UTF-8 bytes and combines unit hashes into shingle hashes with numpy; these tests hold each to its
reference (datasketch ``update_batch``, ``_WORD.findall``, ``plain_shingle_hashes``), so that a
datasketch upgrade or an edited table cannot change stored signatures unnoticed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.stages import fingerprint as fp
from consumers.stages.fingerprint import (
    FingerprintConfig,
    fingerprint,
    minhash_signature,
    plain_shingle_hashes,
    shingle_hashes,
    tokenise,
)


@pytest.mark.parametrize("config", [FingerprintConfig(), FingerprintConfig(num_perm=64, seed=7),
                                    FingerprintConfig(num_perm=256, seed=3)])
@pytest.mark.parametrize("size", [0, 1, 2, 650, 5000])
def test_minhash_signature_equals_datasketch_update_batch(config: FingerprintConfig, size: int) -> None:
    rng = np.random.default_rng(size + config.seed)
    hashes = np.unique(rng.integers(0, 2**32, size=size, dtype=np.uint64).astype(np.uint32))
    reference = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=int, scheme="affine32")
    reference.update_batch(hashes.tolist())
    signature = minhash_signature(hashes, config)
    assert signature.dtype == np.uint32
    assert np.array_equal(signature, np.asarray(reference.hashvalues, dtype=np.uint32))


def test_minhash_signature_extremes_equal_datasketch() -> None:
    hashes = np.array([0, 1, 2**31, 2**32 - 1], dtype=np.uint32)
    reference = MinHash(num_perm=128, seed=1, hashfunc=int, scheme="affine32")
    reference.update_batch(hashes.tolist())
    assert np.array_equal(minhash_signature(hashes, FingerprintConfig()), reference.hashvalues)


def test_minhash_signature_leaves_its_input_alone() -> None:
    hashes = np.array([5, 9, 1000], dtype=np.uint32)
    minhash_signature(hashes, FingerprintConfig())
    assert hashes.tolist() == [5, 9, 1000]


@given(st.lists(st.sampled_from(["ferry", "sailed", "at", "dawn", "the", "crack", "hull", "é"]), max_size=40),
       st.integers(min_value=1, max_value=6))
def test_shingle_hashes_are_the_plain_definition_sorted(words: list[str], n: int) -> None:
    """Repeated words and n-grams (the unique step), texts shorter than a shingle, every size."""
    text = " ".join(words)
    config = FingerprintConfig(word_shingle_size=n)
    expected = np.array(sorted(plain_shingle_hashes(text, config)), dtype=np.uint32)
    assert np.array_equal(shingle_hashes(text, config), expected)


def test_the_token_table_keeps_exactly_the_ascii_word_characters() -> None:
    for byte in range(128):
        expected = byte if re.fullmatch(r"\w", chr(byte)) else ord(" ")
        assert fp._ASCII_NON_WORD_TO_SPACE[byte] == expected, repr(chr(byte))
    assert fp._ASCII_NON_WORD_TO_SPACE[128:] == bytes(range(128, 256))


def test_non_ascii_non_word_is_the_complement_of_word_outside_ascii() -> None:
    for code in range(128, 0x30000):
        char = chr(code)
        if 0xD800 <= code < 0xE000:
            continue
        assert (fp._NON_ASCII_NON_WORD.match(char) is None) == (fp._WORD.match(char) is not None), hex(code)


WORDY = st.text(st.characters(codec="utf-8"), max_size=80) | st.text(
    st.sampled_from("ab Zé£ß_1\u0301\u00a0\u200b\x1c\x85-,.'\"\t\n\u4e00\u0e01€ſ"), max_size=80)


@settings(max_examples=300)
@given(WORDY)
def test_word_tokens_are_tokenise_in_utf8(text: str) -> None:
    assert fp._word_tokens(text) == [token.encode("utf-8") for token in tokenise(text)]


@settings(max_examples=200)
@given(WORDY, st.integers(min_value=1, max_value=6))
def test_fingerprint_shingles_are_the_plain_n_grams(text: str, n: int) -> None:
    config = FingerprintConfig(word_shingle_size=n, char_shingle_size=n)
    grams = fp.shingles(text, config)
    if not fp._uses_characters(text):
        words = tokenise(text)
        plain = {" ".join(words[i:i + n]).encode() for i in range(max(1, len(words) - n + 1))} - {b""}
        assert grams == plain
    result = fingerprint(text, config)
    assert np.array_equal(result.shingle_hashes, np.array(sorted(plain_shingle_hashes(text, config)), dtype=np.uint32))
    assert result.num_shingles <= len(grams)


def plain_uses_characters(text: str) -> bool:
    sample = text[:2000]
    hits = len(fp._NO_SPACE_SCRIPTS.findall(sample))
    return hits > 0 and hits * 3 >= sum(1 for ch in sample if ch.isalpha())


@settings(max_examples=300)
@given(WORDY | st.text(st.sampled_from("ab é£渡轮公司เรือ，。 ภ"), max_size=80))
def test_uses_characters_counts_as_over_the_whole_sample(text: str) -> None:
    assert fp._uses_characters(text) == plain_uses_characters(text)
    long = "渡轮" * 900 + text + "ab " * 900  # the 2,000-character sample cuts into the text
    assert fp._uses_characters(long) == plain_uses_characters(long)
