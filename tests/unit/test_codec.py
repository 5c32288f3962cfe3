"""consumers.storage.codec: stored shingle hashes decode to exactly the set that was encoded, in every format."""

from __future__ import annotations

import numpy as np
import pytest

from consumers.stages.fingerprint import FingerprintConfig, fingerprint, minhash_signature
from consumers.storage.codec import (
    EF24,
    RAW,
    band_values,
    decode_band_values,
    decode_shingle_hashes,
    encode_shingle_hashes,
)


def random_set(size: int, seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).integers(0, 2**32, size, dtype=np.uint64).astype(np.uint32)
    return np.unique(values)


@pytest.mark.parametrize("size", [1, 2, 3, 20, 37, 38, 100, 255, 256, 257, 323, 1000, 5000, 65535, 70000])
def test_round_trip_over_set_sizes(size: int) -> None:
    for seed in range(3):
        hashes = random_set(size, seed)
        stored = encode_shingle_hashes(hashes)
        decoded = decode_shingle_hashes(stored)
        assert decoded.dtype == np.uint32 and np.array_equal(decoded, hashes)
        assert len(stored) % 4 == 1  # never mistaken for the legacy format
        assert len(stored) <= 1 + 4 * len(hashes)


def test_extremes_of_the_value_range_survive() -> None:
    for hashes in (np.array([0], dtype=np.uint32), np.array([2**32 - 1], dtype=np.uint32),
                   np.arange(2**32 - 300, 2**32, dtype=np.uint64).astype(np.uint32),
                   np.arange(0, 300, dtype=np.uint32), (np.arange(256, dtype=np.uint64) << 24).astype(np.uint32)):
        assert np.array_equal(decode_shingle_hashes(encode_shingle_hashes(hashes)), hashes)


def test_a_news_sized_set_takes_about_a_fifth_less() -> None:
    hashes = random_set(330, 7)
    stored = encode_shingle_hashes(hashes)
    assert stored[0] == EF24
    assert len(stored) < 0.82 * 4 * len(hashes)


def test_small_sets_are_stored_plain_behind_a_tag() -> None:
    hashes = random_set(10, 1)
    stored = encode_shingle_hashes(hashes)
    assert stored[0] == RAW and len(stored) == 1 + 4 * len(hashes)


def test_no_shingles_is_no_bytes_and_none_is_none() -> None:
    assert encode_shingle_hashes(np.empty(0, dtype=np.uint32)) == b""
    assert len(decode_shingle_hashes(b"")) == 0 and len(decode_shingle_hashes(None)) == 0


def test_the_legacy_format_still_decodes() -> None:
    hashes = random_set(323, 3)
    assert np.array_equal(decode_shingle_hashes(hashes.astype("<u4").tobytes()), hashes)


def test_unsorted_input_is_refused() -> None:
    with pytest.raises(ValueError, match="sorted and unique"):
        encode_shingle_hashes(np.array([5, 3, 9], dtype=np.uint32))


@pytest.mark.parametrize("stored", [b"\x07abcd5", b"\x01\xff\xff\x00\x00", b"\x00ab"])
def test_bytes_in_no_format_are_refused(stored: bytes) -> None:
    with pytest.raises(ValueError, match="in no format newsdedup writes"):
        decode_shingle_hashes(stored)


def test_band_values_are_the_signature_prefix_and_a_function_of_the_hashes() -> None:
    config = FingerprintConfig()
    fp = fingerprint("the ferry to the island was cancelled again on tuesday because of the storm", config)
    stored = band_values(fp.signature, 23)
    assert len(stored) == 92
    assert np.array_equal(decode_band_values(stored), fp.signature[:23])
    # What a rebuild recomputes for a row that stores fewer values than its bands need.
    again = minhash_signature(decode_shingle_hashes(encode_shingle_hashes(fp.shingle_hashes)), config)
    assert np.array_equal(again, fp.signature)
