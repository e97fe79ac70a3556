"""Episode store: demonstrations in a zarr v3 group, one episode appended at a time.

Layout (the diffusion_policy ReplayBuffer layout, plus robolearn's metadata):

    data/<key>            every step of every episode, concatenated along axis 0
    meta/episode_ends     int64, cumulative end index of each episode (the commit record)
    meta/episodes/<field> one value per episode (task, seed, success, instruction, ...)
    attrs                 format name + version, running per-key statistics, user attrs
                          (e.g. the task and the env kwargs that recorded it)

Crash safety. `append_episode` writes every data array first, then the per-episode
metadata, and extends `meta/episode_ends` last: that write is the commit point. A
reader only looks at steps below the last valid episode end, so it never sees part
of an episode; opening a store for appending trims whatever an interrupted writer
left beyond that point. zarr's local store replaces each chunk file atomically
(write to a temp file, then rename), so rewriting the chunk that holds the tail of
a committed episode cannot corrupt it, even under SIGKILL.

Format 2 (this version). Every array ends its codec chain with a crc32c checksum of each
chunk and is written with `write_empty_chunks`, so every chunk of committed data exists as a
file: a missing or damaged chunk is detected (`StoreDamaged`), never read as zeros. Images
(uint8, ndim 4: T, H, W, C) are zarr v3 sharded arrays: one frame per inner chunk (compressed
with the key's camera codec, `attrs["image_codecs"]`, then checksummed), `frames_per_shard`
frames per shard file, whose index (offset and length of every frame, itself checksummed)
sits at the end of the file. `read_frames` reads a batch of frames straight from the shard
files (byte ranges, checksum, decode) without zarr's per-chunk machinery. Low-dim arrays
are chunked in runs of time steps (~1 MiB), Blosc/zstd compressed.

Appends rewrite the tail shard of each camera; zarr's local store writes it to a temp
file and renames it, so the committed frames it already held survive a crash (the
temp `*.partial` file is removed when the store is next opened for appending).

Format 1 (stores written before checksums): one frame per chunk, no checksums, no
sharding. Such stores still open, read and append in their own layout; `robolearn data
rechunk` rewrites one into format 2.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from robolearn.datasets import codecs
from robolearn.errors import UserError

log = logging.getLogger(__name__)

FORMAT_NAME = "robolearn.episodes"
FORMAT_VERSION = 2
FRAMES_PER_SHARD = 64  # frames per image shard file (measured in benchmarks/loader.py)
CHECKSUMS = True  # False only in benchmarks/loader.py: the same layout without per-chunk crc32c, to measure its cost
LAYOUT_ATTRS = ("format", "format_version", "image_codecs", "image_codec_default", "frames_per_shard", "stats")
LOWDIM_CHUNK_BYTES = 1 << 20  # aim for ~1 MiB chunks of low-dim data
MAX_LOWDIM_CHUNK_STEPS = 4096

# zarr warns that its variable-length string dtype is not in the v3 spec yet; we rely on it knowingly.
warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
warnings.filterwarnings("ignore", category=UserWarning, module="zarr.codecs.vlen_utf8")


class StoreDamaged(UserError):
    """A chunk of committed data is missing or fails its checksum."""

    def __init__(self, message: str):
        # re-raised by a DataLoader from one of its workers, the message is the worker's whole traceback:
        # keep the one line it ends with
        if "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].split("StoreDamaged: ", 1)[-1]
        super().__init__(message)


def _lowdim_codecs() -> list:
    return [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"), *([Crc32cCodec()] if CHECKSUMS else [])]


def _image_codecs(spec) -> dict[str, Any]:
    kw = dict(codecs.image_chunk_codecs(spec))
    if not CHECKSUMS:
        kw["compressors"] = [c for c in kw["compressors"] if not isinstance(c, Crc32cCodec)]
    return kw


def _checked(**kw) -> dict[str, Any]:
    """create_array kwargs of a format-2 array: the given codecs (+ crc32c last), every chunk written."""
    kw.setdefault("compressors", _lowdim_codecs())
    return {**kw, "config": {"write_empty_chunks": True}}


def image_codec_spec(text: str | None, where: str = "image_codecs") -> str:
    """The canonical camera-codec spec string ("blosc", "webp:90", ...); None = the default."""
    return str(codecs.parse_image_codec(codecs.DEFAULT_IMAGE_CODEC if text is None else text, where))


def _is_checksum_error(exc: BaseException) -> bool:
    return "checksum" in str(exc).lower()


_NO_CHUNK = 2**64 - 1  # a shard index entry for a chunk that was never written


class _ShardFrames:
    """Frames of one sharded camera array, read straight from its local shard files.

    A shard file holds F frames (one inner chunk each: codec payload + 4-byte crc32c) and ends
    with its index: F (offset, nbytes) uint64 pairs + the index's own crc32c. Per frame this is
    one pread, one crc32c and one decode, none of zarr's per-chunk machinery. Shard indexes are
    cached with an open file descriptor: for good when the shard is full of committed frames
    (nothing rewrites it then), and keyed on the file's identity (inode, size, mtime) for the
    tail shard, which every append replaces. At most `max_open` shards are held open (least recently
    used closed first), so memory and file descriptors stay bounded however large the store."""

    def __init__(self, store: "EpisodeStore", key: str, arr: zarr.Array, spec, crc: bool = True, max_open: int = 128):
        self._decode = codecs.decode_chunk
        self.store, self.key, self.spec, self.crc = store, key, spec, crc
        self.frames = int(arr.shards[0])
        self.frame_shape = tuple(int(x) for x in arr.shape[1:])
        self.index_bytes = 16 * self.frames + 4
        self.dir = Path(store.path) / "data" / key
        self._encode_key = arr.metadata.encode_chunk_key
        self._cache: dict[int, tuple] = {}  # shard -> (identity, fd, F [offset, nbytes] pairs, full when cached)
        self.max_open = max_open

    @classmethod
    def for_array(cls, store: "EpisodeStore", key: str, arr: zarr.Array) -> "_ShardFrames | None":
        """A reader if `arr` has exactly the format-2 camera layout, else None (zarr reads it)."""
        from zarr.codecs import BytesCodec
        from zarr.codecs.sharding import ShardingCodec, ShardingCodecIndexLocation

        chain = arr.metadata.codecs if arr.metadata.zarr_format == 3 else ()
        if len(chain) != 1 or not isinstance(chain[0], ShardingCodec) or not is_image_array(arr):
            return None
        shard = chain[0]
        inner, index = tuple(shard.codecs), tuple(shard.index_codecs)
        if (shard.index_location != ShardingCodecIndexLocation.end or tuple(shard.chunk_shape) != (1, *arr.shape[1:])
                or len(index) != 2 or not isinstance(index[0], BytesCodec) or not isinstance(index[1], Crc32cCodec)
                or not inner):
            return None
        crc = isinstance(inner[-1], Crc32cCodec)
        inner = inner[:-1] if crc else inner
        if len(inner) == 2 and isinstance(inner[0], BytesCodec) and isinstance(inner[1], BloscCodec):
            spec = codecs.parse_image_codec(codecs.LOSSLESS)  # Blosc frames carry their own parameters
        elif len(inner) == 1 and isinstance(inner[0], codecs.ImageCodec):
            spec = inner[0].spec
        else:
            return None
        return cls(store, key, arr, spec, crc)

    def close(self) -> None:
        for entry in self._cache.values():
            os.close(entry[1])
        self._cache.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _damaged(self, shard: int, row: int | None, what: str) -> StoreDamaged:
        ends = self.store.episode_ends
        if row is None:
            lo, hi = shard * self.frames, min((shard + 1) * self.frames, self.store.n_steps) - 1
            eps = sorted({int(np.searchsorted(ends, lo, side="right")), int(np.searchsorted(ends, hi, side="right"))})
            where = f"steps {lo}-{hi}, episode{'s' if len(eps) > 1 else ''} {'-'.join(map(str, eps))}"
        else:
            where = f"frame {row}, episode {int(np.searchsorted(ends, row, side='right'))}"
        chunk = self._encode_key((shard,) + (0,) * len(self.frame_shape))
        return StoreDamaged(f"{self.store.path}: data/{self.key} chunk {chunk} ({where}): {what}; "
                            f"run `robolearn data validate {self.store.path}`")

    def _open(self, shard: int) -> tuple[int, list]:
        """(fd, index) of shard `shard`, from the cache when the file cannot have changed."""
        hit = self._cache.pop(shard, None)
        if hit is not None:
            self._cache[shard] = hit  # most recently used last
            if hit[3]:  # was full of committed frames when cached: nothing rewrites it any more
                return hit[1], hit[2]
        path = self.dir / self._encode_key((shard,) + (0,) * len(self.frame_shape))
        full = (shard + 1) * self.frames <= self.store.n_steps
        if hit is not None:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns) == hit[0]:
                return hit[1], hit[2]
            os.close(self._cache.pop(shard)[1])
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise self._damaged(shard, None, "shard file missing") from None
        except OSError as exc:
            raise self._damaged(shard, None, f"unreadable ({exc.strerror})") from None
        try:
            st = os.fstat(fd)
            if st.st_size < self.index_bytes:
                raise self._damaged(shard, None, f"shard file truncated ({st.st_size} bytes, its index alone "
                                                 f"needs {self.index_bytes})")
            raw = os.pread(fd, self.index_bytes, st.st_size - self.index_bytes)
            if google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
                raise self._damaged(shard, None, "shard index fails its crc32c checksum")
            index = np.frombuffer(raw, dtype="<u8", count=2 * self.frames).reshape(self.frames, 2).tolist()
        except BaseException:
            os.close(fd)
            raise
        while self._cache and len(self._cache) >= self.max_open:  # close the least recently used
            os.close(self._cache.pop(next(iter(self._cache)))[1])
        self._cache[shard] = ((st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns), fd, index, full)
        return fd, index

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Frames `rows` (sorted, unique, committed) -> (n, H, W, C) uint8."""
        out = np.empty((len(rows), *self.frame_shape), dtype=np.uint8)
        shape, spec, decode, crc, pread, frames = (1, *self.frame_shape), self.spec, self._decode, google_crc32c.value, os.pread, self.frames
        shard, fd, index, checked = -1, -1, [], self.crc
        for k, row in enumerate(rows.tolist()):
            if row // frames != shard:
                shard = row // frames
                fd, index = self._open(shard)
            offset, nbytes = index[row - shard * frames]
            if offset == _NO_CHUNK:
                raise self._damaged(shard, row, "frame missing from its shard")
            payload = pread(fd, nbytes, offset)
            if len(payload) != nbytes or nbytes < 4:
                raise self._damaged(shard, row, "frame truncated")
            if checked:
                body = payload[:-4]
                if crc(body) != int.from_bytes(payload[-4:], "little"):
                    raise self._damaged(shard, row, "frame fails its crc32c checksum")
            else:
                body = payload
            try:
                decode(spec, body, shape, out=out[k : k + 1])
            except Exception as exc:
                raise self._damaged(shard, row, f"frame does not decode as {spec} ({exc})") from None
        return out


def is_image_array(arr: np.ndarray | zarr.Array) -> bool:
    """uint8 arrays shaped (T, H, W, C) are camera frames."""
    return arr.dtype == np.uint8 and len(arr.shape) == 4


def _is_url(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def _is_zip(path: str | os.PathLike) -> bool:
    return str(path).endswith(".zip")


def _open_zarr_store(path: str | os.PathLike, read_only: bool):
    """A zarr store object for a local directory, a local .zip, or an fsspec URL."""
    if _is_url(path):
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(str(path), read_only=read_only)
    if _is_zip(path):
        from zarr.storage import ZipStore

        if not read_only:
            raise UserError(f"{path}: zip stores are read-only archives; write a directory store and export it")
        return ZipStore(str(path), mode="r", read_only=True)
    from zarr.storage import LocalStore

    return LocalStore(str(path), read_only=read_only)


def store_exists(path: str | os.PathLike) -> bool:
    """True if anything (store or not) already lives at `path`."""
    if _is_url(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(str(path))
        return fs.exists(p)
    return Path(path).exists()


def _public_stats(raw: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {s: v[s] for s in ("min", "max", "mean", "std", "count")} for k, v in raw.items() if "min" in v}


def _meta_fill(value: Any) -> Any:
    """The value an earlier episode gets for a metadata field that appears later."""
    if isinstance(value, str):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return -1
    return np.nan


def _to_python(value: Any) -> Any:
    """A numpy scalar / 0-d array as a plain Python str, int, float or bool."""
    return value.item() if isinstance(value, (np.generic, np.ndarray)) else value


def _meta_dtype(value: Any):
    if isinstance(value, str):
        return str
    if isinstance(value, (bool, np.bool_)):
        return np.bool_
    if isinstance(value, (int, np.integer)):
        return np.int64
    if isinstance(value, (float, np.floating)):
        return np.float64
    raise UserError(f"episode metadata value {value!r}: expected str, int, float or bool")


class EpisodeStore:
    """A zarr group of episodes. Create with `create`, open with `open`."""

    def __init__(self, group: zarr.Group, path: str, mode: str):
        self._root = group
        self.path = path
        self.mode = mode
        self._arrays: dict[str, zarr.Array] = {}
        self._meta: dict[str, zarr.Array] = {}
        self._frame_readers: dict[str, _ShardFrames | None] = {}
        self.episode_ends = np.zeros(0, dtype=np.int64)
        self.refresh()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        overwrite: bool = False,
        attrs: Mapping[str, Any] | None = None,
        image_codecs: str | Mapping[str, str] | None = None,
        frames_per_shard: int | None = None,
    ) -> "EpisodeStore":
        """A new, empty store at `path` (a directory or an fsspec URL).

        `image_codecs`: the camera codec of every image key ("blosc", "webp:90", ...) or a
        {key: spec} map (keys not named get the "*" entry or codecs.DEFAULT_IMAGE_CODEC); recorded
        in `attrs["image_codecs"]` as each camera array is created. `frames_per_shard`: frames
        per image shard file (default FRAMES_PER_SHARD)."""
        path = str(path)
        if _is_zip(path):
            raise UserError(f"{path}: zip stores are read-only archives; create a directory store, then `export_zip`")
        if store_exists(path) and not overwrite:
            raise UserError(f"{path}: already exists (pass overwrite=True to replace it)")
        per_key = dict(image_codecs) if isinstance(image_codecs, Mapping) else {}
        default = image_codec_spec(per_key.pop("*", None) if isinstance(image_codecs, Mapping) else image_codecs)
        per_key = {k: image_codec_spec(v, f"image_codecs[{k!r}]") for k, v in per_key.items()}
        shard = FRAMES_PER_SHARD if frames_per_shard is None else int(frames_per_shard)
        if shard < 1:
            raise UserError(f"frames_per_shard: expected an integer >= 1, got {frames_per_shard!r}")
        group = zarr.open_group(_open_zarr_store(path, read_only=False), mode="w")
        group.create_group("data")
        group.create_group("meta")
        group.create_group("meta/episodes")
        group.create_array("meta/episode_ends", **_checked(shape=(0,), chunks=(4096,), dtype=np.int64, fill_value=0))
        user = {k: v for k, v in (attrs or {}).items() if k not in LAYOUT_ATTRS}  # a copy's source says nothing here
        group.attrs.update({"stats": {}, **user, "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                            "image_codecs": per_key, "image_codec_default": default, "frames_per_shard": shard})
        return cls(group, path, "a")

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> "EpisodeStore":
        """Open an existing store; mode "r" (read-only) or "a" (append; trims an interrupted append)."""
        path = str(path)
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        if not store_exists(path):
            raise UserError(f"{path}: no such store")
        try:
            group = zarr.open_group(_open_zarr_store(path, read_only=(mode == "r")), mode="r" if mode == "r" else "r+")
            ends = group["meta/episode_ends"]
            group["data"]
        except UserError:
            raise
        except Exception as exc:  # zarr raises several types for "not a group / missing node"
            raise UserError(f"{path}: not an episode store (expected a zarr group with data/ and meta/episode_ends)") from exc
        if not isinstance(ends, zarr.Array):
            raise UserError(f"{path}: meta/episode_ends is not an array")
        store = cls(group, path, mode)
        if mode == "a":
            store._trim_uncommitted()
        return store

    def __enter__(self) -> "EpisodeStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._drop_frame_readers()
        store = getattr(self._root, "store", None)
        if store is not None and hasattr(store, "close"):
            store.close()

    # ------------------------------------------------------------------ reading
    def refresh(self) -> None:
        """Re-read the commit record (call to see episodes another process appended)."""
        self._drop_frame_readers()  # arrays may have been replaced (labels, rechunk)
        data = self._root["data"]
        with zarr.config.set({"array.write_empty_chunks": self.format_version >= 2}):
            self._arrays = {name: arr for name, arr in data.arrays()}
            # a diffusion_policy store has no per-episode metadata group: that is simply no metadata
            meta = self._root.get("meta/episodes")
            self._meta = {name: arr for name, arr in meta.arrays()} if meta is not None else {}
        self.episode_ends = self._valid_ends(np.asarray(self._root["meta/episode_ends"][:], dtype=np.int64))

    def _valid_ends(self, ends: np.ndarray) -> np.ndarray:
        """The longest prefix of `ends` that a completed append could have written."""
        limit = min((arr.shape[0] for arr in self._arrays.values()), default=0)
        n = 0
        prev = 0
        for end in ends:
            if end <= prev or end > limit:
                break
            prev = int(end)
            n += 1
        n = min([n] + [arr.shape[0] for arr in self._meta.values()])
        return ends[:n].copy()

    @property
    def format_version(self) -> int:
        """2 for checksummed, sharded stores; 1 for stores written before (and peer imports)."""
        version = self._root.attrs.get("format_version", 1)
        return version if isinstance(version, int) else 1

    @property
    def n_episodes(self) -> int:
        return len(self.episode_ends)

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1]) if len(self.episode_ends) else 0

    @property
    def keys(self) -> list[str]:
        return sorted(self._arrays)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self.episode_ends, prepend=0)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root.attrs)

    @property
    def stats(self) -> dict[str, dict[str, list[float]]]:
        """Per-key statistics: min, max, mean, std per last-axis channel, and `count` (steps covered)."""
        return _public_stats(self._root.attrs.get("stats", {}) or {})

    @property
    def meta_fields(self) -> list[str]:
        return sorted(self._meta)

    def episode_slice(self, i: int) -> slice:
        if not -self.n_episodes <= i < self.n_episodes:
            raise IndexError(f"{self.path}: episode {i} out of range (store has {self.n_episodes})")
        i %= self.n_episodes
        start = int(self.episode_ends[i - 1]) if i > 0 else 0
        return slice(start, int(self.episode_ends[i]))

    def array(self, key: str) -> zarr.Array:
        """The raw zarr array for `key`; only [:n_steps] is committed."""
        if key not in self._arrays:
            raise UserError(f"{self.path}: no data key {key!r} (store has {', '.join(self.keys) or 'none'})")
        return self._arrays[key]

    def get(self, key: str) -> np.ndarray:
        """All committed steps of `key`, loaded into memory."""
        return self._zarr_read(key, slice(0, self.n_steps))

    def get_episode(self, i: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        sl = self.episode_slice(i)
        return {k: self._zarr_read(k, sl) for k in (keys or self.keys)}

    def _zarr_read(self, key: str, sel: slice | np.ndarray) -> np.ndarray:
        """`key`'s committed rows `sel` through zarr; a failed checksum or a missing chunk is StoreDamaged."""
        arr = self.array(key)
        rows = np.arange(self.n_steps)[sel] if isinstance(sel, slice) else sel
        self._require_chunks(key, arr, rows)
        try:
            return arr[sel] if isinstance(sel, slice) else arr.oindex[sel]
        except (ValueError, RuntimeError) as exc:
            if not _is_checksum_error(exc) and "decompress" not in str(exc).lower():
                raise
            eps = np.unique(np.searchsorted(self.episode_ends, rows, side="right")) if len(rows) else []
            raise StoreDamaged(f"{self.path}: data/{key} steps {rows.min()}-{rows.max()} (episodes "
                               f"{', '.join(map(str, eps))}): a chunk {'fails its crc32c checksum' if _is_checksum_error(exc) else 'does not decompress'}; "
                               f"run `robolearn data validate {self.path}`") from None

    def _require_chunks(self, key: str, arr: zarr.Array, rows: np.ndarray) -> None:
        """Format 2 writes every chunk, so a missing chunk file under committed rows is damage (zarr
        would read it as zeros). Checked for local directory stores: one stat per chunk."""
        if self.format_version < 2 or not len(rows) or _is_url(self.path) or _is_zip(self.path):
            return
        step = int((arr.shards or arr.chunks)[0])
        for c in np.unique(np.asarray(rows) // step).tolist():
            name = arr.metadata.encode_chunk_key((c,) + (0,) * (arr.ndim - 1))
            if not os.path.exists(os.path.join(self.path, "data", key, name)):
                lo, hi = c * step, min((c + 1) * step, self.n_steps) - 1
                eps = sorted({int(np.searchsorted(self.episode_ends, r, side="right")) for r in (lo, hi)})
                raise StoreDamaged(f"{self.path}: data/{key} chunk {name} (steps {lo}-{hi}, episodes "
                                   f"{'-'.join(map(str, eps))}): chunk file missing; run `robolearn data validate {self.path}`")

    def read_frames(self, key: str, rows: np.ndarray | list[int]) -> np.ndarray:
        """Committed rows `rows` of camera `key` -> (n, H, W, C) uint8, in the order given (repeats allowed).

        Format-2 local directory stores: every frame is read from its shard file (byte range,
        crc32c, decode), no zarr in between; zip / URL / format-1 stores read through zarr. Memory
        is the frames asked for plus the cached shard indexes. A damaged frame raises StoreDamaged
        naming the array, the chunk and the episode."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_steps):
            raise IndexError(f"{self.path}: rows must lie in [0, {self.n_steps}), got {rows.min()}..{rows.max()}")
        uniq, inverse = np.unique(rows, return_inverse=True)
        if key not in self._frame_readers:
            arr = self.array(key)
            local = not (_is_url(self.path) or _is_zip(self.path)) and self.format_version >= 2
            self._frame_readers[key] = _ShardFrames.for_array(self, key, arr) if local else None
        reader = self._frame_readers[key]
        frames = reader.read(uniq) if reader is not None else self._zarr_read(key, uniq)
        return frames if len(uniq) == len(rows) and np.array_equal(uniq, rows) else frames[inverse.reshape(-1)]

    def _drop_frame_readers(self) -> None:
        for reader in getattr(self, "_frame_readers", {}).values():
            if reader is not None:
                reader.close()
        self._frame_readers = {}

    def iter_episodes(self, keys: list[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self.n_episodes):
            yield self.get_episode(i, keys)

    def meta_column(self, field: str) -> np.ndarray:
        if field not in self._meta:
            raise UserError(f"{self.path}: no episode metadata field {field!r} (has {', '.join(self.meta_fields) or 'none'})")
        return self._meta[field][: self.n_episodes]

    def episode_meta(self, i: int) -> dict[str, Any]:
        i = range(self.n_episodes)[i]
        return {f: _to_python(arr[i : i + 1][0]) for f, arr in self._meta.items()}

    def nbytes_stored(self) -> int:
        """Bytes on disk (local directories only; -1 otherwise)."""
        if _is_url(self.path):
            return -1
        p = Path(self.path)
        if p.is_file():
            return p.stat().st_size
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if self.mode != "a":
            raise UserError(f"{self.path}: opened read-only")

    def _kw(self, **kw) -> dict[str, Any]:
        """create_array kwargs in this store's format (format 2: crc32c last, every chunk written)."""
        return _checked(**kw) if self.format_version >= 2 else kw

    def update_attrs(self, **kwargs: Any) -> None:
        self._require_writable()
        self._root.attrs.update(kwargs)

    def _create_data_array(self, key: str, value: np.ndarray) -> zarr.Array:
        shape = (0,) + value.shape[1:]
        row_bytes = max(1, int(np.prod(value.shape[1:], dtype=np.int64)) * value.dtype.itemsize)
        steps = int(np.clip(LOWDIM_CHUNK_BYTES // row_bytes, 1, MAX_LOWDIM_CHUNK_STEPS))
        if self.format_version < 2:  # a format-1 store keeps its layout: no checksums, one frame per chunk
            image = is_image_array(value)
            codec = BloscCodec(cname="zstd", clevel=3 if image else 5, shuffle="bitshuffle" if image else "shuffle")
            return self._root.create_array(f"data/{key}", shape=shape, chunks=((1 if image else steps),) + value.shape[1:],
                                           dtype=value.dtype, compressors=codec, fill_value=0)
        if not is_image_array(value):
            return self._root.create_array(f"data/{key}", **_checked(shape=shape, chunks=(steps,) + value.shape[1:],
                                                                       dtype=value.dtype, fill_value=0))
        attrs = self._root.attrs
        codecs_by_key = dict(attrs.get("image_codecs", {}) or {})
        choice = {**codecs_by_key, "*": attrs.get("image_codec_default") or codecs.DEFAULT_IMAGE_CODEC}
        spec = codecs.spec_for_array(choice, key, value.shape, value.dtype, f"{self.path}: image_codecs")
        frames = int(attrs.get("frames_per_shard", FRAMES_PER_SHARD))
        arr = self._root.create_array(
            f"data/{key}", **_checked(shape=shape, chunks=(1,) + value.shape[1:], shards=(frames,) + value.shape[1:],
                                      dtype=value.dtype, fill_value=0, attributes={"image_codec": str(spec)},
                                      **_image_codecs(spec)))
        spec = str(spec)
        if codecs_by_key.get(key) != spec:
            attrs["image_codecs"] = {**codecs_by_key, key: spec}
        return arr

    def _check_episode(self, data: Mapping[str, np.ndarray]) -> int:
        if not data:
            raise UserError(f"{self.path}: an episode needs at least one data key")
        lengths = {k: len(v) for k, v in data.items()}
        if len(set(lengths.values())) != 1:
            raise UserError(f"{self.path}: episode keys have different lengths {lengths}; expected one length T")
        length = next(iter(lengths.values()))
        if length == 0:
            raise UserError(f"{self.path}: empty episode (0 steps)")
        if self._arrays:
            missing, extra = set(self._arrays) - set(data), set(data) - set(self._arrays)
            if missing or extra:
                raise UserError(
                    f"{self.path}: episode keys differ from the store's: missing {sorted(missing)}, unexpected {sorted(extra)}"
                )
            for k, v in data.items():
                arr = self._arrays[k]
                if v.shape[1:] != arr.shape[1:] or v.dtype != arr.dtype:
                    raise UserError(
                        f"{self.path}: data/{k} expects steps of shape {arr.shape[1:]} {arr.dtype}, "
                        f"got {v.shape[1:]} {v.dtype}"
                    )
        elif self.format_version >= 2:  # the first episode: a codec named for a key must fit it (lossy = RGB only)
            named = {k: v for k, v in dict(self._root.attrs.get("image_codecs", {}) or {}).items() if k in data}
            codecs.check_codec_keys(named, {k: (v.shape, v.dtype) for k, v in data.items()}, f"{self.path}: image_codecs")
        return length

    def append_episode(self, data: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> int:
        """Append one episode; returns its index. The episode_ends write is the commit point."""
        self._require_writable()
        data = {k: np.ascontiguousarray(v) for k, v in data.items()}
        length = self._check_episode(data)
        start = self.n_steps
        end = start + length

        # 1. data arrays (beyond the commit point: invisible to readers until step 3)
        for key, value in data.items():
            arr = self._arrays.get(key) or self._create_data_array(key, value)
            self._arrays[key] = arr
            arr.resize((end,) + arr.shape[1:])
            arr[start:end] = value

        # 2. per-episode metadata
        n = self.n_episodes
        for field, value in (meta or {}).items():
            arr = self._meta.get(field)
            if arr is None:
                dtype = _meta_dtype(value)
                arr = self._root.create_array(
                    f"meta/episodes/{field}", **self._kw(shape=(0,), chunks=(4096,), dtype=dtype, fill_value=_meta_fill(value))
                )
                if n:
                    arr.resize((n,))
                    arr[:n] = np.array([_meta_fill(value)] * n, dtype=arr.dtype)
                self._meta[field] = arr
            arr.resize((n + 1,))
            arr[n : n + 1] = np.array([value], dtype=arr.dtype)
        for field, arr in self._meta.items():  # fields this episode did not give
            if field not in (meta or {}):
                arr.resize((n + 1,))
                arr[n : n + 1] = np.array([_meta_fill(_to_python(arr[:1][0]))], dtype=arr.dtype)

        # 3. commit
        ends = self._root["meta/episode_ends"]
        ends.resize((n + 1,))
        ends[n] = end
        self.episode_ends = np.append(self.episode_ends, np.int64(end))
        self._drop_frame_readers()  # their idea of which shards are full is out of date

        self._update_running_stats(data)
        return n

    def write_labels(self, labels: Mapping[str, np.ndarray]) -> None:
        """Write per-step label arrays (e.g. InfoCon's `concept`, `key_state`) as `data/<key>`.

        Each array has `n_steps` rows and is stored as one chunk, so a reader never sees a
        half-written label: rewriting a label of the same shape and dtype replaces its one chunk
        file atomically (zarr's local store writes a temp file and renames it); a new label (or
        one whose shape/dtype changes) is built whole under `.labels_tmp/` and moved into `data/`
        by a directory rename (`fs.mv` for fsspec URLs, as atomic as the backend allows). Later
        episodes appended to the store must then carry these keys too.
        """
        self._require_writable()
        if not self.n_steps:
            raise UserError(f"{self.path}: no committed steps to label")
        local_tmp = None if _is_url(self.path) else Path(self.path) / ".labels_tmp"
        if local_tmp is not None:
            shutil.rmtree(local_tmp, ignore_errors=True)  # left over by an interrupted call
        stats = dict(self._root.attrs.get("stats", {}) or {})
        for key, value in labels.items():
            value = np.ascontiguousarray(value)
            if not key or "/" in key or key.startswith("."):
                raise UserError(f"{self.path}: label name {key!r}: expected a plain name (no '/', no leading '.')")
            if value.ndim == 0 or len(value) != self.n_steps:
                raise UserError(f"{self.path}: label {key!r} needs {self.n_steps} rows (one per step), got shape {value.shape}")
            arr = self._arrays.get(key)
            if arr is not None and (arr.shape, arr.dtype, arr.chunks) == (value.shape, value.dtype, value.shape):
                arr[:] = value  # one chunk file, replaced atomically
            else:
                tmp = self._root.create_array(f".labels_tmp/{key}", **self._kw(
                    shape=value.shape, chunks=value.shape, dtype=value.dtype, fill_value=0, overwrite=True,
                    compressors=_lowdim_codecs() if self.format_version >= 2 else BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")))
                tmp[:] = value
                self._move_into_data(key)
            if self._has_stats(value):
                stats[key] = self._finish(self._moments(value), self.n_steps)
        if local_tmp is not None:
            shutil.rmtree(local_tmp, ignore_errors=True)
        self._root.attrs["stats"] = stats
        self.refresh()

    def write_episode_meta(self, fields: Mapping[str, np.ndarray]) -> None:
        """Write per-episode metadata columns (e.g. OOD-IL's `transferability`, `mode_cluster`) as
        `meta/episodes/<field>`, one value per committed episode, adding or replacing the field.

        Every column is checked first, then built whole under `.meta_tmp/` and moved into
        `meta/episodes/` by a directory rename, so a reader sees each field either as it was or
        complete; a bad column raises before anything is written."""
        self._require_writable()
        n = self.n_episodes
        if not n:
            raise UserError(f"{self.path}: no committed episodes to write metadata for")
        checked = {}
        for name, value in fields.items():
            value = np.asarray(value)
            if not name or "/" in name or name.startswith("."):
                raise UserError(f"{self.path}: metadata field {name!r}: expected a plain name (no '/', no leading '.')")
            if value.shape != (n,):
                raise UserError(f"{self.path}: metadata field {name!r} needs shape ({n},) (one value per episode), got {value.shape}")
            if value.dtype.kind not in "biuf":
                raise UserError(f"{self.path}: metadata field {name!r}: expected bool, int or float values, got {value.dtype}")
            checked[name] = value.astype(np.float64 if value.dtype.kind == "f" else np.int64 if value.dtype.kind in "iu" else bool)
        local_tmp = None if _is_url(self.path) else Path(self.path) / ".meta_tmp"
        if local_tmp is not None:
            shutil.rmtree(local_tmp, ignore_errors=True)  # left over by an interrupted call
        for name, value in checked.items():
            tmp = self._root.create_array(f".meta_tmp/{name}", **self._kw(
                shape=(n,), chunks=(4096,), dtype=value.dtype, fill_value=_meta_fill(_to_python(value[0])), overwrite=True))
            tmp[:] = value
        for name in checked:
            if _is_url(self.path):
                import fsspec

                fs, root = fsspec.core.url_to_fs(self.path)
                if fs.exists(f"{root}/meta/episodes/{name}"):
                    fs.rm(f"{root}/meta/episodes/{name}", recursive=True)
                fs.mv(f"{root}/.meta_tmp/{name}", f"{root}/meta/episodes/{name}", recursive=True)
            else:
                dst, old = Path(self.path) / "meta" / "episodes" / name, local_tmp / f"{name}.old"
                if dst.exists():
                    os.replace(dst, old)
                os.replace(local_tmp / name, dst)
        if local_tmp is not None:
            shutil.rmtree(local_tmp, ignore_errors=True)
        self.refresh()

    def _move_into_data(self, key: str) -> None:
        """Rename `.labels_tmp/<key>` to `data/<key>`, replacing any existing array."""
        if _is_url(self.path):
            import fsspec

            fs, root = fsspec.core.url_to_fs(self.path)
            if fs.exists(f"{root}/data/{key}"):
                fs.rm(f"{root}/data/{key}", recursive=True)
            fs.mv(f"{root}/.labels_tmp/{key}", f"{root}/data/{key}", recursive=True)
            return
        root = Path(self.path)
        dst, old = root / "data" / key, root / ".labels_tmp" / f"{key}.old"
        if dst.exists():
            os.replace(dst, old)
        os.replace(root / ".labels_tmp" / key, dst)

    def _trim_uncommitted(self) -> None:
        """Drop whatever an interrupted append left beyond the last committed episode."""
        n, steps = self.n_episodes, self.n_steps
        trimmed = []
        ends = self._root["meta/episode_ends"]
        if ends.shape[0] > n:
            ends[n:] = 0  # clear the slots so a later resize cannot resurrect them
            ends.resize((n,))
            trimmed.append("meta/episode_ends")
        for key, arr in self._arrays.items():
            if arr.shape[0] > steps:
                arr.resize((steps,) + arr.shape[1:])
                trimmed.append(f"data/{key}")
        for field, arr in self._meta.items():
            if arr.shape[0] > n:
                arr.resize((n,))
                trimmed.append(f"meta/episodes/{field}")
        if not _is_url(self.path):
            for partial in Path(self.path).rglob("*.partial"):
                partial.unlink(missing_ok=True)
        if trimmed:
            log.warning("%s: trimmed an interrupted append (%s)", self.path, ", ".join(trimmed))
        stats = self._root.attrs.get("stats", {}) or {}
        if any(v.get("count") != steps for v in stats.values()) or set(stats) != set(self._arrays):
            self.compute_stats()

    # ------------------------------------------------------------------ statistics
    # Each key's entry keeps sufficient statistics ("rows", "sum", "sumsq", "min", "max", over the
    # rows actually read) so an append updates them without re-reading the store, plus the derived
    # "mean"/"std" and "count" (the number of committed steps they describe). Image statistics are
    # taken over every pixel of a subsample of frames.
    @staticmethod
    def _moments(x: np.ndarray) -> dict[str, Any]:
        x = x.reshape(len(x), -1) if x.ndim <= 2 else x.reshape(-1, x.shape[-1])  # (rows, C)
        x = x.astype(np.float64)
        return {"rows": len(x), "sum": x.sum(0), "sumsq": np.square(x).sum(0), "min": x.min(0), "max": x.max(0)}

    @staticmethod
    def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        return {
            "rows": a["rows"] + b["rows"],
            "sum": np.add(a["sum"], b["sum"]),
            "sumsq": np.add(a["sumsq"], b["sumsq"]),
            "min": np.minimum(a["min"], b["min"]),
            "max": np.maximum(a["max"], b["max"]),
        }

    @staticmethod
    def _finish(m: dict[str, Any], steps: int) -> dict[str, Any]:
        mean = np.asarray(m["sum"]) / max(m["rows"], 1)
        var = np.maximum(np.asarray(m["sumsq"]) / max(m["rows"], 1) - mean**2, 0.0)
        out = {k: np.asarray(v).tolist() for k, v in m.items() if k != "rows"}
        return {**out, "rows": int(m["rows"]), "count": int(steps), "mean": mean.tolist(), "std": np.sqrt(var).tolist()}

    @staticmethod
    def _stat_rows(value: np.ndarray) -> np.ndarray:
        """Rows that enter the statistics: every step, or every pixel of ~16 frames for images."""
        return value[:: max(1, len(value) // 16)] if is_image_array(value) else value

    @staticmethod
    def _has_stats(arr: np.ndarray | zarr.Array) -> bool:
        return np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_

    def _update_running_stats(self, data: Mapping[str, np.ndarray]) -> None:
        stats = dict(self._root.attrs.get("stats", {}) or {})
        for key, value in data.items():
            if not self._has_stats(value):
                continue
            m = self._moments(self._stat_rows(value))
            if key in stats and "sum" in stats[key]:
                m = self._merge(stats[key], m)
            stats[key] = self._finish(m, self.n_steps)
        self._root.attrs["stats"] = stats

    def compute_stats(self) -> dict[str, dict[str, list[float]]]:
        """Recompute every key's statistics from the committed data (saved when writable)."""
        stats = {}
        if self.n_steps:
            for key in self.keys:
                arr = self.array(key)
                if not self._has_stats(arr):
                    continue
                if is_image_array(arr):  # read only the frames that enter the statistics
                    rows = arr.oindex[np.arange(0, self.n_steps, max(1, self.n_steps // 16))]
                else:
                    rows = self.get(key)
                stats[key] = self._finish(self._moments(rows), self.n_steps)
        if self.mode == "a":
            self._root.attrs["stats"] = stats
        return _public_stats(stats)

    # ------------------------------------------------------------------ copying
    def export_zip(self, dst: str | os.PathLike) -> None:
        """Write this store's committed episodes into a zip archive, atomically."""
        dst = Path(dst)
        with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
            local = Path(tmp) / "store.zarr"
            copy_episodes(self, local)
            tmp_zip = Path(tmp) / "store.zip"
            with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_STORED) as zf:
                for f in sorted(local.rglob("*")):
                    if f.is_file():
                        zf.write(f, f.relative_to(local).as_posix())
            os.replace(tmp_zip, dst)


def layout_of(store: EpisodeStore) -> dict[str, Any]:
    """`create` kwargs that give a new store `store`'s camera codecs and shard size (a format-1 store's
    cameras are lossless Blosc: so are the copy's)."""
    attrs = store.attrs
    if store.format_version < 2:
        return {"image_codecs": {"*": codecs.LOSSLESS}}
    codecs_by_key = dict(attrs.get("image_codecs", {}) or {})
    for key in store.keys:  # the codec each camera array records itself wins
        spec = store.array(key).attrs.get("image_codec")
        if spec:
            codecs_by_key[key] = spec
    if attrs.get("image_codec_default"):
        codecs_by_key["*"] = attrs["image_codec_default"]
    return {"image_codecs": codecs_by_key, "frames_per_shard": attrs.get("frames_per_shard")}


def copy_episodes(src: EpisodeStore, dst: str | os.PathLike) -> EpisodeStore:
    """A new (format 2) store at `dst` holding `src`'s committed episodes, metadata and attrs, same camera codecs."""
    out = EpisodeStore.create(dst, attrs=src.attrs, **layout_of(src))
    for i in range(src.n_episodes):
        out.append_episode(src.get_episode(i), src.episode_meta(i))
    return out


class AtomicStoreWriter:
    """Build a store next to `dst` and move it into place only when everything succeeded.

        with AtomicStoreWriter(dst, attrs=...) as store:
            store.append_episode(...)

    On any exception the partial store is deleted and `dst` is left untouched. Local
    directories get an atomic rename; fsspec URLs are written in place and removed on
    failure (the best an object store offers); a `.zip` destination is exported at the end.
    """

    def __init__(self, dst: str | os.PathLike, attrs: Mapping[str, Any] | None = None, overwrite: bool = False,
                 **create_kw: Any):
        """`create_kw`: `EpisodeStore.create`'s layout options (image_codecs, frames_per_shard)."""
        self.dst = str(dst)
        self.attrs = dict(attrs or {})
        self.overwrite = overwrite
        self.create_kw = create_kw
        self._tmpdir: str | None = None
        self.store: EpisodeStore | None = None

    def __enter__(self) -> EpisodeStore:
        if store_exists(self.dst) and not self.overwrite:
            raise UserError(f"{self.dst}: already exists; refusing to overwrite")
        if _is_url(self.dst):
            self.store = EpisodeStore.create(self.dst, overwrite=self.overwrite, attrs=self.attrs, **self.create_kw)
        else:
            parent = Path(self.dst).resolve().parent
            if not parent.is_dir():
                raise UserError(f"{self.dst}: parent directory {parent} does not exist")
            self._tmpdir = tempfile.mkdtemp(prefix=".robolearn-tmp-", dir=parent)
            self.store = EpisodeStore.create(Path(self._tmpdir) / "store.zarr", attrs=self.attrs, **self.create_kw)
        return self.store

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                if _is_url(self.dst):
                    import fsspec

                    fs, p = fsspec.core.url_to_fs(self.dst)
                    if fs.exists(p):
                        fs.rm(p, recursive=True)
                return
            if _is_url(self.dst):
                return
            built = Path(self._tmpdir) / "store.zarr"
            if _is_zip(self.dst):
                self.store.export_zip(self.dst)
                return
            if self.overwrite and Path(self.dst).exists():
                shutil.rmtree(self.dst)
            os.replace(built, self.dst)
        finally:
            if self._tmpdir:
                shutil.rmtree(self._tmpdir, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def rechunk(src: str | os.PathLike, out: str | os.PathLike | None = None,
            image_codecs: str | list[str] | Mapping[str, str] | None = None, frames_per_shard: int | None = None,
            progress: bool = False) -> dict[str, Any]:
    """Rewrite store `src` in format 2 (checksums, sharded cameras), at `out` or in place; atomic.

    The new store is built beside the destination and renamed into place only when every
    episode was copied (in place: the old and new directories are swapped in one atomic rename,
    then the old one is deleted), so on any error -- a damaged chunk in `src`, a bad codec spec,
    a full disk -- nothing changes. `image_codecs`: "SPEC" for every camera or ["KEY=SPEC", ...]
    (codecs.parse_image_codec_options); cameras not named keep their codec (a format-1 store's
    are lossless Blosc: rechunk never makes frames lossy unless asked). `frames_per_shard`: default the store's own, else FRAMES_PER_SHARD. Reads one
    episode at a time. -> a summary dict (episodes, steps, codecs, frames_per_shard, bytes)."""
    from tqdm.auto import tqdm

    src = str(src)
    in_place = out is None
    if in_place and (_is_url(src) or _is_zip(src)):
        raise UserError(f"{src}: rechunk in place needs a local directory store; give --out NEW")
    if frames_per_shard is not None and int(frames_per_shard) < 1:
        raise UserError(f"--frames-per-shard: expected an integer >= 1, got {frames_per_shard}")
    with EpisodeStore.open(src) as source:
        given = codecs.parse_image_codec_options(image_codecs, "--image-codec")
        arrays = {k: source.array(k) for k in source.keys}
        codecs.check_codec_keys(given, arrays, "--image-codec")
        cameras = [k for k, a in arrays.items() if is_image_array(a)]
        layout = layout_of(source)
        current = layout.get("image_codecs", {})
        named = dict(given) if isinstance(given, Mapping) else {}
        default = given if isinstance(given, str) else named.pop("*", None)
        chosen = {}
        for k in cameras:  # named > the new default (lossless for non-RGB frames) > the camera's own codec
            shape, dtype = arrays[k].shape, arrays[k].dtype
            chosen[k] = named.get(k) or str(codecs.spec_for_array(default, k, shape, dtype) if default else
                                            current.get(k) or current.get("*") or codecs.LOSSLESS)
        shard = int(frames_per_shard or layout.get("frames_per_shard") or FRAMES_PER_SHARD)
        before = source.nbytes_stored()
        if in_place:
            src_dir = Path(src)
            tmp = Path(tempfile.mkdtemp(prefix=".robolearn-rechunk-", dir=src_dir.resolve().parent))
            writer = AtomicStoreWriter(tmp / "store.zarr", attrs=source.attrs, image_codecs=chosen, frames_per_shard=shard)
        else:
            tmp = None
            writer = AtomicStoreWriter(out, attrs=source.attrs, image_codecs=chosen, frames_per_shard=shard)
        try:
            with writer as new:
                bar = tqdm(range(source.n_episodes), desc=f"rechunk {Path(src).name}", unit="ep",
                           disable=None if progress else True)
                for i in bar:
                    new.append_episode(source.get_episode(i), source.episode_meta(i))
                after = new.nbytes_stored()
                summary = {"episodes": new.n_episodes, "steps": new.n_steps, "image_codecs": chosen,
                           "frames_per_shard": shard, "bytes_before": before, "bytes_after": after}
            if in_place:
                built = tmp / "store.zarr"
                if not _exchange(built, src_dir):  # no atomic swap here: two renames
                    os.replace(src_dir, tmp / "old.zarr")
                    os.replace(built, src_dir)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return summary

