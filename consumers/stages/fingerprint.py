"""Fingerprint: normalised text → exact content hash, shingles, and a MinHash signature.

Word n-gram shingles for scripts that separate words with spaces; character n-grams for
scripts that do not (Chinese, Japanese, Thai, Lao, Khmer, Burmese), where "words" would be
whole sentences.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import AnyStr

import numpy as np
import xxhash
from datasketch import MinHash

SCHEME = "affine32"  # datasketch 2.x scheme; signatures from different schemes never compare
_WORD = re.compile(r"\w+", re.UNICODE)
# Word tokens are cut from UTF-8 bytes, several times faster than _WORD.findall and with no
# encode per shingle afterwards: non-ASCII characters that are not word characters ("£", "€")
# become spaces first, then one bytes.translate turns every ASCII non-word byte into a space and
# bytes.split cuts the tokens. The same tokens as _WORD: the UTF-8 bytes of non-ASCII characters
# are all >= 0x80, which the table leaves alone.
_NON_ASCII_NON_WORD = re.compile(r"[^\x00-\x7f\w]")
_ASCII_NON_WORD_TO_SPACE = bytes(
    byte if byte >= 0x80 or chr(byte).isalnum() or byte == ord("_") else ord(" ") for byte in range(256)
)
_NO_SPACE_SCRIPTS = re.compile(
    r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)


@dataclass(frozen=True, slots=True)
class FingerprintConfig:
    """Everything that decides a signature; signatures made under other values never compare."""

    num_perm: int = 128
    seed: int = 1
    word_shingle_size: int = 4
    char_shingle_size: int = 4

    def __post_init__(self) -> None:
        if self.num_perm < 16:
            raise ValueError(f"num_perm={self.num_perm} is too small for stable estimates; use at least 16")
        if self.word_shingle_size < 1 or self.char_shingle_size < 1:
            raise ValueError("shingle sizes must be at least 1")

    @property
    def identity(self) -> str:
        """A short string stored with every signature (datatrove's MinhashConfig.__str__ idea)."""
        return (f"mh1-{SCHEME}-xxh32-p{self.num_perm}-s{self.seed}"
                f"-w{self.word_shingle_size}-c{self.char_shingle_size}")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    content_hash: str  # sha256 of the normalised text: equal hashes mean an exact copy
    signature: np.ndarray  # uint32[num_perm]: finds candidates through LSH
    shingle_hashes: np.ndarray  # sorted unique uint32 hashes of the shingles: verifies candidates exactly

    @property
    def num_shingles(self) -> int:
        return len(self.shingle_hashes)


def content_hash(normalised: str) -> str:
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()


def tokenise(normalised: str) -> list[str]:
    return _WORD.findall(normalised)


def shingles(normalised: str, config: FingerprintConfig) -> set[bytes]:
    """The shingle set of a normalised text (see the module docstring for the two kinds)."""
    return set(_grams(normalised, config))


def _grams(normalised: str, config: FingerprintConfig) -> Iterator[bytes]:
    """Every shingle of the text in order, repeats included (callers deduplicate)."""
    if not normalised.isascii() and _uses_characters(normalised):
        return map(str.encode, _ngrams(list("".join(normalised.split())), config.char_shingle_size, ""))
    return _ngrams(_word_tokens(normalised), config.word_shingle_size, b" ")


def _word_tokens(text: str) -> list[bytes]:
    """``tokenise(text)`` as UTF-8 bytes (see _NON_ASCII_NON_WORD for how)."""
    if not text.isascii():
        text = _NON_ASCII_NON_WORD.sub(" ", text)
    return text.encode("utf-8").translate(_ASCII_NON_WORD_TO_SPACE).split()


def _ngrams(tokens: list[AnyStr], n: int, separator: AnyStr) -> Iterator[AnyStr]:
    if len(tokens) <= n:
        return iter([separator.join(tokens)] if tokens else [])
    # zip over shifted slices joins each n-gram in C: no Python-level slicing per shingle.
    return map(separator.join, zip(*(tokens[i:] for i in range(n)), strict=False))


def fingerprint(normalised: str, config: FingerprintConfig) -> Fingerprint:
    hashes = shingle_hashes(_grams(normalised, config))
    return Fingerprint(content_hash(normalised), minhash_signature(hashes, config), hashes)


def shingle_hashes(grams: Iterable[bytes]) -> np.ndarray:
    """xxhash32 of each shingle, sorted and unique (two shingles rarely share a hash: 1 in 4e9 per pair)."""
    # Digests as 4 big-endian bytes each, joined and read by numpy in one go: a little faster than
    # an int per shingle through np.fromiter.
    hashes = np.sort(np.frombuffer(b"".join(map(xxhash.xxh32_digest, grams)), dtype=">u4").astype(np.uint32))
    # Unique by comparing neighbours: np.unique (numpy 2) builds a hash table first, and costs 5x more here.
    distinct = np.empty(len(hashes), dtype=bool)
    distinct[:1] = True
    np.not_equal(hashes[1:], hashes[:-1], out=distinct[1:])
    return hashes[distinct]


def minhash_signature(hashes: np.ndarray, config: FingerprintConfig) -> np.ndarray:
    """datasketch's affine32 MinHash of the shingles' xxhash32 values, computed on the array itself.

    The same values as ``MinHash(num_perm, seed, scheme="affine32").update_batch(hashes)`` (a unit
    test holds it to that), without the MinHash object, ``tolist()`` and an ``int()`` per shingle:
    each hash is pre-mixed with MurmurHash3's 32-bit finaliser, then permuted by every
    ``a * h + b mod 2**32`` (uint32 arithmetic wraps), and each permutation keeps its minimum.
    """
    a, b = _permutations(config)
    if not len(hashes):
        return np.full(config.num_perm, _MAX_HASH, dtype=np.uint32)
    permuted = np.multiply.outer(a, _fmix32(hashes))  # num_perm rows: each row's minimum is one value
    permuted += b[:, np.newaxis]
    return permuted.min(axis=1)


_MAX_HASH = np.iinfo(np.uint32).max


def _fmix32(hashes: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch.minhash._fmix for width 32), on a copy."""
    mixed = hashes.astype(np.uint32)
    mixed ^= mixed >> np.uint32(16)
    mixed *= np.uint32(0x85EBCA6B)
    mixed ^= mixed >> np.uint32(13)
    mixed *= np.uint32(0xC2B2AE35)
    mixed ^= mixed >> np.uint32(16)
    return mixed


@functools.lru_cache(maxsize=8)
def _permutations(config: FingerprintConfig) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's permutation parameters (a, b) for this config, drawn once."""
    a, b = (values.astype(np.uint32) for values in
            MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=int, scheme=SCHEME).permutations)
    a.flags.writeable = b.flags.writeable = False  # shared by every call through the cache
    return a, b


def array_to_bytes(values: np.ndarray) -> bytes:
    """A uint32 array (signature or shingle hashes) as little-endian bytes, for the wire and the database."""
    return values.astype("<u4", copy=False).tobytes()


def array_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _uses_characters(text: str) -> bool:
    """Character shingles when a fair share of the letters come from a script without spaces."""
    sample = text[:2000]
    hits = len(_NO_SPACE_SCRIPTS.findall(sample))
    return hits > 0 and hits * 3 >= sum(1 for ch in sample if ch.isalpha())
