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

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from datasketch import MinHashLSH

from consumers.stages.fingerprint import FingerprintConfig

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
    bucket_limit: int = 16  # newest articles a query takes from one LSH bucket (see PackedBands.query)

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
        if self.bucket_limit < 1:
            raise ValueError(f"bucket_limit={self.bucket_limit} must be at least 1")


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
    size_a, size_b = len(hashes_a), len(hashes_b)
    if not size_a or not size_b:
        return Similarity(0.0, 0.0)
    # Both sets are unique, so a value of the union sorted twice in a row is a shared one. One
    # concatenate + sort costs half of np.intersect1d, which also builds the intersection itself.
    both = np.concatenate((hashes_a, hashes_b))
    both.sort()
    shared = int(np.count_nonzero(both[1:] == both[:-1]))
    return Similarity(shared / (size_a + size_b - shared), shared / min(size_a, size_b))


def verify(similarity: Similarity, size_a: int, size_b: int, config: MatchConfig) -> bool:
    smaller, larger = sorted((size_a, size_b))
    if smaller < config.min_shingles:
        # On a text of a few shingles any shared phrase is a large share: only near-identical texts match.
        return similarity.jaccard >= SHORT_TEXT_JACCARD
    if similarity.jaccard >= config.jaccard_threshold:
        return True
    return smaller >= config.min_size_ratio * larger and similarity.containment >= config.containment_threshold


def lsh_bands(fingerprint: FingerprintConfig, match: MatchConfig) -> tuple[int, int]:
    """(b, r): the configured bands, or those datasketch's optimiser picks for the threshold.

    Only the optimiser is borrowed from datasketch (an empty MinHashLSH, thrown away): its
    storage costs 4.5 KB per article, so the bands themselves live in ``CandidateIndex``.
    """
    if match.num_bands is not None and match.rows_per_band is not None:
        return match.num_bands, match.rows_per_band
    weights = (1.0 - match.false_negative_weight, match.false_negative_weight)
    lsh = MinHashLSH(threshold=match.lsh_threshold, num_perm=fingerprint.num_perm, weights=weights)
    return lsh.b, lsh.r


class PackedBands:
    """Band table for r = 1: band collisions → article ordinals, at 8 bytes per band entry.

    Every (band, value, ordinal) is packed into one uint64, most significant first, so one sorted
    array answers "which ordinals have this value in this band" with a binary search, and stays
    sorted by ordinal inside a bucket. New inserts go to a dict first (a sorted array cannot take
    one entry cheaply), which is merged into a small sorted run now and then; the small run into
    the large one once it reaches an eighth of it, so each entry is copied a few times, not once
    per insert. Queries look at the dict and both runs. Entries of removed articles stay until
    ``renumber`` drops them; callers filter dead ordinals out of query results.

    A query takes at most ``limit`` ordinals from one bucket, the newest (None: all of them).
    A shingle that many unrelated articles share (an agency's reprint notice, a site's footer)
    is the minimum of some permutation for most of them whenever its hash happens to be small,
    and then one bucket holds them all: every query that probes it would get hundreds of
    candidates to verify and reject (on the dev set, 9 to 44 per article depending on the
    MinHash seed). Real copies share several bands and the newest members of a story stay
    in its buckets, so a limit of 16 changed no F1 of dev, dev-real or helsinki-proxy at
    three seeds while bounding the work per query.
    """

    def __init__(self, bands: int, limit: int | None = None) -> None:
        self.bands = bands
        self.limit = limit
        self._ordinal_bits = 32 - bands.bit_length()  # band < 2**bits - 1: band, value, ordinal fit 64 bits
        self.max_ordinal = (1 << self._ordinal_bits) - 1
        self._band_bits = np.arange(bands, dtype=np.uint64) << np.uint64(32 + self._ordinal_bits)
        self._value_shift = np.uint64(self._ordinal_bits)
        self._bucket_width = np.uint64(1 << self._ordinal_bits)  # every ordinal of one (band, value)
        self._small = np.empty(0, dtype=np.uint64)
        self._large = np.empty(0, dtype=np.uint64)
        self._recent: dict[int, int | list[int]] = {}  # band << 32 | value → ordinal(s)
        self._recent_rows: list[tuple[int, np.ndarray]] = []  # (ordinal, band values) not yet in a run

    def add(self, ordinal: int, signature: np.ndarray) -> None:
        values = signature[: self.bands]
        recent = self._recent
        for band, value in enumerate(values.tolist()):
            key = band << 32 | value
            held = recent.get(key)
            if held is None:
                recent[key] = ordinal
            elif type(held) is list:
                held.append(ordinal)
            else:
                recent[key] = [held, ordinal]
        self._recent_rows.append((ordinal, values.copy()))  # a copy: the signature itself is not kept
        # Small enough to stay a few MB, large enough that merging costs little per insert.
        held = (len(self._small) + len(self._large)) // self.bands
        if len(self._recent_rows) >= min(10_000, max(1_000, held // 100)):
            self._flush()

    def add_many(self, ordinals: np.ndarray, signatures: np.ndarray) -> None:
        """Bulk insert (a rebuild): one sort instead of a dict entry per band."""
        self._flush()
        self._merge_in(self._pack(ordinals, signatures[:, : self.bands]))

    def query(self, signature: np.ndarray) -> list[int]:
        """Ordinals sharing at least one band with this signature (unsorted, repeated, maybe removed)."""
        values = signature[: self.bands]
        limit = self.limit
        found: list[int] = []
        left: dict[int, int] = {}  # band → ordinals taken from its bucket so far: newest first (dict, small run, large)
        for band, value in enumerate(values.tolist()):
            held = self._recent.get(band << 32 | value)
            if held is not None:
                taken = _newest(held, limit)
                found.extend(taken)
                left[band] = len(taken)
        low = (values.astype(np.uint64) << self._value_shift) | self._band_bits
        # Each bucket's [low, high) interleaved: increasing (the band is on top), which numpy's
        # binary search exploits by starting each search where the previous one ended.
        bounds = np.stack((low, low + self._bucket_width), axis=1).ravel()
        mask = self.max_ordinal
        for run in (self._small, self._large):
            if not len(run):
                continue
            edges = run.searchsorted(bounds)
            starts, stops = edges[0::2], edges[1::2]
            # Buckets hold a few entries and most probes find none: a Python loop over the
            # buckets found beats the dozen numpy calls that gather every range at once.
            for band in np.flatnonzero(stops > starts).tolist():
                start, stop = int(starts[band]), int(stops[band])
                if limit is not None:  # a bucket is sorted by ordinal: its newest entries are last
                    start = max(start, stop - (limit - left.get(band, 0)))
                    left[band] = left.get(band, 0) + stop - start
                found.extend([packed & mask for packed in run[start:stop].tolist()])
        return found

    def renumber(self, new_ordinal: np.ndarray) -> None:
        """Apply ``new_ordinal[old]`` (increasing; -1 for removed articles) to every entry."""
        self._flush()
        run = np.concatenate((self._small, self._large))
        mask = np.uint64(self.max_ordinal)
        moved = new_ordinal[(run & mask).astype(np.int64)]
        keep = moved >= 0
        run = (run[keep] & ~mask) | moved[keep].astype(np.uint64)
        run.sort(kind="stable")  # the two runs were sorted apart, renumbering keeps each one's order: a merge
        self._small, self._large = np.empty(0, dtype=np.uint64), run

    def nbytes(self) -> int:
        recent = len(self._recent_rows) * self.bands * 100  # dict entries and int objects, roughly
        return self._small.nbytes + self._large.nbytes + recent

    def _pack(self, ordinals: np.ndarray, values: np.ndarray) -> np.ndarray:
        packed = (values.astype(np.uint64) << self._value_shift) | self._band_bits \
            | ordinals.astype(np.uint64)[:, None]
        packed = packed.ravel()
        packed.sort()  # a plain sort of uint64 is ~20x faster than an argsort: hence the packing
        return packed

    def _flush(self) -> None:
        if not self._recent_rows:
            return
        ordinals = np.array([ordinal for ordinal, _ in self._recent_rows], dtype=np.int64)
        self._merge_in(self._pack(ordinals, np.stack([values for _, values in self._recent_rows])))
        self._recent.clear()
        self._recent_rows.clear()

    def _merge_in(self, run: np.ndarray) -> None:
        # Both halves are sorted already: numpy's stable sort (timsort for uint64) finds the two runs and
        # merges them in linear time, 4-5x faster than the default introsort here (a rebuild of 1.5M
        # articles spent a fifth of its time in these sorts).
        self._small = np.sort(np.concatenate((self._small, run)), kind="stable")
        if len(self._small) * 8 >= len(self._large):
            self._large = np.sort(np.concatenate((self._large, self._small)), kind="stable")
            self._small = np.empty(0, dtype=np.uint64)


class DictBands:
    """Band table for r > 1 (a band of r values does not pack into 64 bits): a dict of band keys.

    About 1.3 KB per article at 23 bands, against 4.5 KB for datasketch's storage; the default
    r = 1 uses ``PackedBands``.
    """

    max_ordinal = (1 << 62) - 1

    def __init__(self, bands: int, rows: int, limit: int | None = None) -> None:
        self.bands, self.rows, self.limit = bands, rows, limit
        self._table: dict[tuple[int, bytes], int | list[int]] = {}

    def _keys(self, signature: np.ndarray) -> list[tuple[int, bytes]]:
        r = self.rows
        return [(band, signature[band * r:(band + 1) * r].tobytes()) for band in range(self.bands)]

    def add(self, ordinal: int, signature: np.ndarray) -> None:
        for key in self._keys(signature):
            held = self._table.get(key)
            if held is None:
                self._table[key] = ordinal
            elif type(held) is list:
                held.append(ordinal)
            else:
                self._table[key] = [held, ordinal]

    def add_many(self, ordinals: np.ndarray, signatures: np.ndarray) -> None:
        for ordinal, signature in zip(ordinals.tolist(), signatures, strict=True):
            self.add(ordinal, signature)

    def query(self, signature: np.ndarray) -> list[int]:
        found: list[int] = []
        for key in self._keys(signature):
            held = self._table.get(key)
            if held is not None:
                found.extend(_newest(held, self.limit))
        return found

    def renumber(self, new_ordinal: np.ndarray) -> None:
        table: dict[tuple[int, bytes], int | list[int]] = {}
        for key, held in self._table.items():
            kept = [o for o in (new_ordinal[held].tolist() if type(held) is list else [int(new_ordinal[held])])
                    if o >= 0]
            if kept:
                table[key] = kept if len(kept) > 1 else kept[0]
        self._table = table

    def nbytes(self) -> int:
        return len(self._table) * 150  # dict entry, tuple, bytes: roughly


def band_table(bands: int, rows: int, limit: int | None = None) -> PackedBands | DictBands:
    """The band table for (b, r): packed sorted arrays when a band is one value, else a dict.
    ``limit``: at most that many ordinals per bucket and query, the newest (see ``PackedBands``)."""
    return PackedBands(bands, limit) if rows == 1 else DictBands(bands, rows, limit)


class HashArena:
    """Every article's sorted unique shingle hashes back to back in large uint32 chunks.

    A numpy array per article costs 112 bytes of object and 16 of allocator header on top of its
    ~1.3 KB of hashes, and a million of them are a million objects for the garbage collector to
    walk; here an article costs its hashes. A location is chunk << 32 | offset; chunks are
    allocated empty, so their unfilled tail takes no memory until written.
    """

    CHUNK = 1 << 22  # hashes per chunk: 16 MB

    def __init__(self) -> None:
        self._chunks: list[np.ndarray | None] = []
        self._fill = self.CHUNK  # used part of the last chunk: full, so the first add makes one
        self.used = 0  # hashes held (removed ones included, until the owner compacts)

    def add(self, hashes: np.ndarray) -> int:
        size = len(hashes)
        if self._fill + size > len(self._chunks[-1] if self._chunks else ()):
            self._chunks.append(np.empty(max(self.CHUNK, size), dtype=np.uint32))
            self._fill = 0
        chunk = self._chunks[-1]
        assert chunk is not None
        chunk[self._fill:self._fill + size] = hashes
        location = (len(self._chunks) - 1) << 32 | self._fill
        self._fill += size
        self.used += size
        return location

    def view(self, location: int, size: int) -> np.ndarray:
        chunk = self._chunks[location >> 32]
        assert chunk is not None
        offset = location & 0xFFFFFFFF
        return chunk[offset:offset + size]

    def release_before(self, location: int) -> None:
        """Free the chunks before this location's (a compaction has copied what it needed of them)."""
        for index in range(location >> 32):
            self._chunks[index] = None


class CandidateIndex:
    """The articles a matcher holds, as LSH bands (candidates) and shingle hashes (verification).

    Keys are article keys; inside, each article has an ordinal (its insertion rank), which is
    what the band table stores and what locates its hashes in the arena. Candidates come back in
    insertion order, so results do not depend on the hash seed of Python's sets. Removing an
    article only forgets its key; once a fifth of the ordinals are dead, ``_compact`` renumbers
    the live ones and copies their hashes, so memory follows the live articles; ``on_compact``
    then gets the old ordinals kept (increasing), so that an owner keeping its own per-article
    columns by ordinal can renumber them alike.
    """

    def __init__(self, fingerprint: FingerprintConfig, match: MatchConfig,
                 on_compact: Callable[[np.ndarray], None] | None = None) -> None:
        self._on_compact = on_compact
        self._bands_rows = lsh_bands(fingerprint, match)
        self._bands = band_table(*self._bands_rows, limit=match.bucket_limit)
        self._arena = HashArena()
        self._ordinal: dict[Hashable, int] = {}
        self._keys: list[Hashable | None] = []  # by ordinal; None once removed
        self._location = np.empty(1024, dtype=np.int64)  # by ordinal: where its hashes are
        self._size = np.empty(1024, dtype=np.int32)  # by ordinal: how many

    @property
    def bands(self) -> tuple[int, int]:
        """(b, r): number of bands and rows per band."""
        return self._bands_rows

    def insert(self, key: Hashable, signature: np.ndarray, shingle_hashes: np.ndarray) -> int:
        """Add an article; returns its ordinal (valid until the next compaction)."""
        ordinal = self._add(key, shingle_hashes)
        self._bands.add(ordinal, signature)
        return ordinal

    def insert_many(self, keys: Sequence[Hashable], signatures: np.ndarray,
                    shingle_hashes: Sequence[np.ndarray]) -> np.ndarray:
        """Insert many at once (a rebuild): the same state as one ``insert`` each, built faster.
        Returns their ordinals."""
        ordinals = np.array([self._add(key, hashes) for key, hashes in zip(keys, shingle_hashes, strict=True)],
                            dtype=np.int64)
        if len(ordinals):
            self._bands.add_many(ordinals, signatures)
        return ordinals

    def remove(self, key: Hashable) -> None:
        ordinal = self._ordinal.pop(key)
        self._keys[ordinal] = None
        dead = len(self._keys) - len(self._ordinal)
        if dead >= 1000 and dead * 5 >= len(self._keys):
            self._compact()

    def candidates(self, signature: np.ndarray) -> list[tuple[Hashable, np.ndarray]]:
        """(key, shingle hashes) of every article sharing a band with this signature, oldest first."""
        ordinals = self._bands.query(signature)
        if not ordinals:
            return []
        keys, location, size, view = self._keys, self._location, self._size, self._arena.view
        return [(keys[o], view(int(location[o]), int(size[o]))) for o in sorted(set(ordinals)) if keys[o] is not None]

    def find_candidates(self, signature: np.ndarray) -> list[Hashable]:
        """Keys whose signature collides with this one in at least one band (approximate)."""
        return [key for key, _ in self.candidates(signature)]

    def ordinal(self, key: Hashable) -> int:
        """The article's ordinal (KeyError if not held); valid until the next compaction."""
        return self._ordinal[key]

    def shingle_hashes(self, key: Hashable) -> np.ndarray:
        ordinal = self._ordinal[key]
        return self._arena.view(int(self._location[ordinal]), int(self._size[ordinal]))

    def nbytes(self) -> dict[str, int]:
        """Memory of the index's own arrays: LSH bands, shingle hashes, and the per-article bookkeeping
        (ordinal arrays, the key list and key → ordinal dict, about 100 bytes an article)."""
        return {"lsh": self._bands.nbytes(), "hashes": self._arena.used * 4,
                "bookkeeping": len(self._keys) * (12 + 8) + len(self._ordinal) * 80}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._ordinal

    def __len__(self) -> int:
        return len(self._ordinal)

    def __iter__(self) -> Iterator[Hashable]:
        """The keys held, oldest first."""
        return iter(self._ordinal)

    def _add(self, key: Hashable, shingle_hashes: np.ndarray) -> int:
        if len(self._keys) > self._bands.max_ordinal:
            self._compact()
            if len(self._keys) > self._bands.max_ordinal:
                raise ValueError(f"more than {self._bands.max_ordinal:,} articles in one matcher: "
                                 f"use more partitions or a shorter retention")
        ordinal = len(self._keys)
        if ordinal == len(self._location):
            self._location = _grown(self._location, 2 * ordinal)
            self._size = _grown(self._size, 2 * ordinal)
        self._keys.append(key)
        self._ordinal[key] = ordinal
        self._location[ordinal] = self._arena.add(shingle_hashes)
        self._size[ordinal] = len(shingle_hashes)
        return ordinal

    def _compact(self) -> None:
        """Renumber the live articles 0..n-1 (order kept) and copy their hashes into a fresh arena."""
        live = np.array([ordinal for ordinal, key in enumerate(self._keys) if key is not None], dtype=np.int64)
        new_ordinal = np.full(len(self._keys), -1, dtype=np.int64)
        new_ordinal[live] = np.arange(len(live))
        self._bands.renumber(new_ordinal)
        old, self._arena = self._arena, HashArena()
        location = np.empty(max(1024, len(live)), dtype=np.int64)
        for new, ordinal in enumerate(live.tolist()):
            at = int(self._location[ordinal])
            location[new] = self._arena.add(old.view(at, int(self._size[ordinal])))
            old.release_before(at)  # ordinals follow locations: earlier chunks are copied already
        self._size = _grown(self._size[live], len(location))
        self._location = location
        self._keys = [self._keys[ordinal] for ordinal in live.tolist()]
        self._ordinal = {key: new for new, key in enumerate(self._keys)}
        if self._on_compact is not None:
            self._on_compact(live)


def _grown(values: np.ndarray, size: int) -> np.ndarray:
    """A copy of ``values`` with room for ``size`` (the rest uninitialised)."""
    grown = np.empty(size, dtype=values.dtype)
    grown[: len(values)] = values
    return grown


def _newest(held: int | list[int], limit: int | None) -> list[int]:
    """A dict bucket's ordinals (one int, or a list in insertion order when it holds several), the
    newest ``limit`` of them (None: all)."""
    if type(held) is not list:
        return [held]
    return held if limit is None or len(held) <= limit else held[-limit:]
