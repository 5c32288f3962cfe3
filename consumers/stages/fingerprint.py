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
_ASCII_WORD = re.compile(rb"\w+")  # on ASCII text the same tokens as _WORD
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
    if normalised.isascii():  # the common case: bytes all the way, and no script to look for
        return _ngrams(_ASCII_WORD.findall(normalised.encode("ascii")), config.word_shingle_size, b" ")
    if _uses_characters(normalised):
        return map(str.encode, _ngrams(list("".join(normalised.split())), config.char_shingle_size, ""))
    return map(str.encode, _ngrams(tokenise(normalised), config.word_shingle_size, " "))


def _ngrams(tokens: list[AnyStr], n: int, separator: AnyStr) -> Iterator[AnyStr]:
    if len(tokens) <= n:
        return iter([separator.join(tokens)] if tokens else [])
    return map(separator.join, zip(*(tokens[i:] for i in range(n)), strict=False))


def fingerprint(normalised: str, config: FingerprintConfig) -> Fingerprint:
    hashes = shingle_hashes(_grams(normalised, config))
    return Fingerprint(content_hash(normalised), minhash_signature(hashes, config), hashes)


def shingle_hashes(grams: Iterable[bytes]) -> np.ndarray:
    """xxhash32 of each shingle, sorted and unique (two shingles rarely share a hash: 1 in 4e9 per pair)."""
    return np.unique(np.fromiter(map(xxhash.xxh32_intdigest, grams), dtype=np.uint32))


def minhash_signature(hashes: np.ndarray, config: FingerprintConfig) -> np.ndarray:
    """datasketch MinHash over the shingles' xxhash32 values (several times faster than its sha1 default)."""
    minhash = _empty_minhash(config).copy()  # copying skips re-drawing the permutations, a third of the cost
    minhash.update_batch(hashes.tolist())
    return np.asarray(minhash.hashvalues, dtype=np.uint32)


@functools.lru_cache(maxsize=8)
def _empty_minhash(config: FingerprintConfig) -> MinHash:
    return MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=int, scheme=SCHEME)


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
