"""How an article's verification data is stored: shingle hashes compacted, of the signature only the LSH bands.

Shingle hashes (``articles.shingle_hashes``) are a sorted set of uint32. Stored as they are they take 4 bytes
each and never compress (random bits). Sorted, their top 8 bits climb slowly: each value keeps its low 24 bits
(3 bytes) and the top bytes become one bitmap of n + 256 bits (Elias-Fano with 24 low bits: value i sets bit
``top_byte(i) + i``). About 3.2 bytes a hash for the 100 to 3,000 shingles of a news article, near the 3.1
a sorted random set can take at all, and decoded by a handful of numpy calls (no per-hash Python).

The layout, self-describing so that a reader never needs to know when a row was written:

- ``b""``: no shingles (an empty text);
- length a multiple of 4: the legacy format, little-endian uint32 as they are (rows written before
  migration 0005, or by a role still running the old build while it ran);
- otherwise a tag byte, then: ``RAW`` the little-endian uint32 (sets too small for the bitmap to pay off),
  ``EF24`` n (uint16 little-endian), the n low 3-byte parts, the bitmap (bit i of byte j is bit 8j + i), and
  zero bytes so that the whole length is 1 more than a multiple of 4 (apart from the legacy format).

The signature (``articles.signature``) is stored as its first b * r values, the ones the LSH bands use
(``band_values``); a rebuild needing more recomputes them from the shingle hashes, which they are a function of
(``consumers.stages.fingerprint.minhash_signature``).

``decode_shingle_hashes`` is the one reader of the column: every part of newsdedup that needs the hashes of a
stored article calls it.
"""

from __future__ import annotations

import numpy as np

RAW = 0
EF24 = 1
_LOW_BYTES = 3
_TOP_VALUES = 256  # top byte values: the bitmap holds n + 256 bits
_MAX_EF24 = 0xFFFF  # n is stored in 2 bytes; larger sets (a 65k-shingle text) go RAW
_RANKS = np.arange(_MAX_EF24 + 1, dtype=np.int64)  # value i's bit is top + i: its rank, subtracted (read-only)
_RANKS.flags.writeable = False


def encode_shingle_hashes(hashes: np.ndarray) -> bytes:
    """Sorted unique uint32 shingle hashes → their stored bytes (see the module docstring)."""
    n = len(hashes)
    if not n:
        return b""
    values = np.ascontiguousarray(hashes, dtype="<u4")
    if n > 1 and not (values[1:] > values[:-1]).all():
        raise ValueError(f"shingle hashes must be sorted and unique (fingerprint.shingle_hashes makes them so); "
                         f"got {values[:8].tolist()}...")
    ef24_size = 3 + _LOW_BYTES * n + (n + _TOP_VALUES + 7) // 8
    if n > _MAX_EF24 or ef24_size >= 1 + 4 * n:
        return bytes([RAW]) + values.tobytes()
    bits = np.zeros(n + _TOP_VALUES, dtype=np.uint8)
    bits[(values >> np.uint32(24)) + _RANKS[:n]] = 1
    encoded = b"".join((bytes((EF24, n & 0xFF, n >> 8)), values.view(np.uint8).reshape(n, 4)[:, :_LOW_BYTES].tobytes(),
                        np.packbits(bits, bitorder="little").tobytes()))
    return encoded + bytes((1 - len(encoded)) % 4)  # length 1 mod 4: never taken for the legacy format


def decode_shingle_hashes(data: bytes | memoryview | None) -> np.ndarray:
    """Stored shingle hashes (any format this module ever wrote; None for an article without) → the sorted
    uint32 array, a new writable array. Raises ValueError on bytes no version of newsdedup wrote."""
    if not data:
        return np.empty(0, dtype=np.uint32)
    size = len(data)
    if size % 4 == 0:  # legacy: before migration 0005
        return np.frombuffer(data, dtype="<u4").astype(np.uint32)
    tag = data[0]
    if tag == RAW and size % 4 == 1:
        return np.frombuffer(data, dtype="<u4", offset=1).astype(np.uint32)
    if tag == EF24 and size >= 3:
        n = data[1] | data[2] << 8
        low_end = 3 + _LOW_BYTES * n
        bitmap_bytes = (n + _TOP_VALUES + 7) // 8
        if size >= low_end + bitmap_bytes:
            # Each low part read as a uint32 starting 3 bytes after the previous one (its top byte belongs
            # to the next value, or to the bitmap for the last one, and is masked off): one strided view.
            low = np.ndarray((n,), dtype="<u4", buffer=data, offset=3, strides=(_LOW_BYTES,))
            top = np.unpackbits(np.frombuffer(data, np.uint8, bitmap_bytes, low_end), bitorder="little").nonzero()[0]
            if len(top) == n:
                top -= _RANKS[:n]
                hashes = top.astype(np.uint32) << np.uint32(24)
                hashes |= low & np.uint32(0xFFFFFF)
                return hashes
    raise ValueError(f"stored shingle hashes of {size} bytes starting {bytes(data[:4]).hex()} are in no format "
                     f"newsdedup writes (consumers/storage/codec.py): the row was written by something else")


def band_values(signature: np.ndarray, values: int) -> bytes:
    """The first ``values`` (b * r) of a MinHash signature as stored: little-endian uint32."""
    return np.ascontiguousarray(signature[:values], dtype="<u4").tobytes()


def decode_band_values(data: bytes | memoryview) -> np.ndarray:
    """Stored signature values (a prefix of the signature; the whole of it in rows before 0005), read-only view."""
    return np.frombuffer(data, dtype="<u4")

