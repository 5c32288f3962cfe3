"""Match: find candidate copies (approximate) and verify them (exact similarity).

Two named steps, as datasketch's own ``MinHashLSH.query`` docstring advises: LSH band
collisions of the MinHash signatures give candidates, which may be false positives and may
miss pairs near the threshold; every candidate is then verified on the shingle sets themselves
(their 32-bit hashes), not on signature estimates. On real news the decisions that matter sit
close to the thresholds (successive write-thrus of a wire story, background paragraphs two
different stories share), and a 128-permutation estimate (±0.04 on Jaccard, far worse on
containment derived from it) flipped enough of them to cost 5-10 points of pairwise F1.

Verification accepts a pair when either
- the Jaccard similarity of the shingle sets reaches ``jaccard_threshold`` (light edits, other
  chrome, successive versions), or
- the containment of the smaller set in the larger reaches ``containment_threshold`` (trimmed
  copies, which keep a part of the story verbatim), provided the smaller text has at least
  ``min_size_ratio`` of the larger one's shingles (a short item inside a live page or digest is
  not a copy of it).
A text with fewer than ``min_shingles`` shingles matches only a near-identical one (Jaccard of
at least ``SHORT_TEXT_JACCARD``): on a few shingles, one shared phrase is a large share.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

from consumers.stages.fingerprint import SCHEME, FingerprintConfig

SHORT_TEXT_JACCARD = 0.9
NEAR = "near"
EXACT = "exact"
CANONICAL = "canonical"


@dataclass(frozen=True, slots=True)
class MatchConfig:
    lsh_threshold: float = 0.15
    false_negative_weight: float = 0.9  # datasketch's optimiser weighs missed pairs against extra candidates
    num_bands: int | None = None  # with rows_per_band: fixes (b, r) instead of datasketch's optimiser
    rows_per_band: int | None = None
    jaccard_threshold: float = 0.32
    containment_threshold: float = 0.6
    min_shingles: int = 20
    min_size_ratio: float = 0.15  # containment counts only when smaller/larger shingle counts reach this

    def check(self, fingerprint: FingerprintConfig) -> None:
        """Cross-field rules, checked at start-up with the values in the message."""
        if (self.num_bands is None) != (self.rows_per_band is None):
            raise ValueError("set both num_bands and rows_per_band, or neither")
        if self.num_bands is not None and self.rows_per_band is not None \
                and self.num_bands * self.rows_per_band > fingerprint.num_perm:
            raise ValueError(
                f"num_bands * rows_per_band = {self.num_bands * self.rows_per_band} exceeds "
                f"num_perm = {fingerprint.num_perm}")
        if self.num_bands is not None and self.num_bands < 2:
            raise ValueError(f"num_bands={self.num_bands}: datasketch's LSH needs at least 2 bands")
        for name in ("lsh_threshold", "jaccard_threshold", "containment_threshold", "false_negative_weight"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name}={value} must be in (0, 1]")
        if not 0.0 <= self.min_size_ratio <= 1.0:
            raise ValueError(f"min_size_ratio={self.min_size_ratio} must be in [0, 1] (smaller / larger shingle count)")
        if self.min_shingles < 1:
            raise ValueError(f"min_shingles={self.min_shingles} must be at least 1")


@dataclass(frozen=True, slots=True)
class Similarity:
    jaccard: float
    containment: float  # of the smaller shingle set in the larger one

    @property
    def score(self) -> float:
        """One number to rank candidates by."""
        return max(self.jaccard, self.containment)


def compare(hashes_a: np.ndarray, hashes_b: np.ndarray) -> Similarity:
    """Jaccard and containment of two shingle sets, given as sorted unique hash arrays."""
    smaller = min(len(hashes_a), len(hashes_b))
    if smaller == 0:
        return Similarity(0.0, 0.0)
    shared = len(np.intersect1d(hashes_a, hashes_b, assume_unique=True))
    return Similarity(shared / (len(hashes_a) + len(hashes_b) - shared), shared / smaller)


def verify(similarity: Similarity, size_a: int, size_b: int, config: MatchConfig) -> bool:
    smaller, larger = sorted((size_a, size_b))
    if smaller < config.min_shingles:
        # On a text of a few shingles any shared phrase is a large share: only near-identical texts match.
        return similarity.jaccard >= SHORT_TEXT_JACCARD
    if similarity.jaccard >= config.jaccard_threshold:
        return True
    return smaller >= config.min_size_ratio * larger and similarity.containment >= config.containment_threshold


class CandidateIndex:
    """datasketch MinHashLSH over stored signatures; keys are article keys."""

    def __init__(self, fingerprint: FingerprintConfig, match: MatchConfig) -> None:
        params = None
        if match.num_bands is not None and match.rows_per_band is not None:
            params = (match.num_bands, match.rows_per_band)
        self._seed = fingerprint.seed
        weights = (1.0 - match.false_negative_weight, match.false_negative_weight)
        self._lsh = MinHashLSH(threshold=match.lsh_threshold, num_perm=fingerprint.num_perm, weights=weights,
                               params=params)

    @property
    def bands(self) -> tuple[int, int]:
        """(b, r): number of bands and rows per band."""
        return self._lsh.b, self._lsh.r

    def _minhash(self, signature: np.ndarray) -> LeanMinHash:
        return LeanMinHash(seed=self._seed, hashvalues=signature, scheme=SCHEME)

    def insert(self, key: Hashable, signature: np.ndarray) -> None:
        self._lsh.insert(key, self._minhash(signature), check_duplication=False)

    def remove(self, key: Hashable) -> None:
        self._lsh.remove(key)

    def find_candidates(self, signature: np.ndarray) -> list[Hashable]:
        """Keys whose signature collides with this one in at least one band (approximate)."""
        return list(self._lsh.query(self._minhash(signature)))

    def __len__(self) -> int:
        return len(self._lsh.keys)
