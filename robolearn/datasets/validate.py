"""Check an episode store on disk, without trusting (or repairing) what it says.

`EpisodeStore.open` only exposes the valid committed prefix of a store and `mode="a"`
trims whatever lies beyond it, which is right for a crashed append but hides damage.
The checks here read the raw zarr tree instead, opening every array on its own (so one
array's broken metadata cannot hide the others), and report every problem they find:

    inventory   every entry of data/ and meta/episodes/ is an array whose metadata reads;
                root metadata, data/ and meta/episode_ends present; keys the store's own
                records name (attrs["stats"], attrs["image_codecs"]) exist
    ends        episode_ends strictly increasing and positive (every episode has >= 1 step)
    lengths     every data/<key> has exactly episode_ends[-1] steps (shorter: truncated;
                longer: an uncommitted tail); every meta/episodes/<field> one value per episode
    schema      camera keys (`*_image`, and every key in attrs["image_codecs"]) are uint8
                (T, H, W, C); a key's channel count matches the statistics it was written with
    chunks      (full scan) every chunk of every array: present when the array carries
                checksums (format 2 writes every chunk, even all-zero ones, so a missing file
                is damage, not zeros), its shard index intact, and it decodes (crc32c checked)
    values      no NaN / inf in float arrays (committed steps only); low-dim values inside
                the [min, max] their statistics recorded (a dtype changed in the metadata,
                or bytes changed under a format-1 store, read as other numbers)
    stats       attrs["stats"] holds an entry per numeric key, computed over all n_steps

Each problem is one `Problem`, printed as `"<where>: <what>"` (where = a path inside the
store, e.g. `data/action`); chunk problems name the chunk file, its steps and episode(s).
`scan` returns a `Report`; `validate_store` returns the problems as strings. `check_before_reading`
is the quick check `train`, `pretrain` and the importers run on open: structure and schema
of every key, full values of the low-dim keys the command reads anyway, the chunk files and
shard indexes of its cameras; it refuses with one line naming the problem and saying which
keys it did not read. `store_read_failure` turns a chunk that fails while training into the
same kind of line. The same checks work on diffusion_policy's ReplayBuffer stores (zarr v2),
which have no robolearn attrs: pass `robolearn=False` to skip the format and stats checks.

Stores of format_version 1 carry no checksums: a deleted chunk reads as zeros and a changed
byte may still decode, so `validate` says so (one note) and `robolearn data rechunk` adds them.
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import zarr

from robolearn.datasets.store import FORMAT_NAME, FORMAT_VERSION, _open_zarr_store, store_exists
from robolearn.errors import UserError

log = logging.getLogger(__name__)
# a file or stray directory inside data/ is reported here, one line; zarr's own multi-line warning would repeat it
warnings.filterwarnings("ignore", message=r"Object at .* is not recognized as a component of a Zarr hierarchy")

SCAN_BYTES = 64 << 20  # read arrays in blocks of about this many bytes
METADATA_FILES = {"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"}
EMPTY = np.uint64(2**64 - 1)  # a shard index entry for an absent inner chunk


# ---------------------------------------------------------------------- problems and reports
@dataclass
class Problem:
    """One thing wrong with a store. `key` is the array it concerns ("action" for data/action,
    "meta/episodes/seed", "meta/episode_ends") or None for the store as a whole; `rows` the steps
    (episodes, for meta arrays) it spoils when known; `blocks` True when a reader cannot open the
    store around it (root metadata, episode_ends, unreadable metadata, a truncated key)."""

    where: str
    what: str
    key: str | None = None
    rows: tuple[int, int] | None = None
    blocks: bool = False
    more_rows: tuple[int, ...] = ()  # further single rows it spoils (every non-finite step)
    tail: bool = False  # steps past the last committed episode: an interrupted append, not damage

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Report:
    path: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ends: np.ndarray | None = None  # meta/episode_ends when usable (None: missing, unreadable or inconsistent)
    raw_ends: np.ndarray | None = None  # meta/episode_ends as read, if it could be read
    attrs: dict[str, Any] = field(default_factory=dict)
    data: dict[str, zarr.Array] = field(default_factory=dict)
    meta: dict[str, zarr.Array] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # data keys whose chunks were not read

    @property
    def n_steps(self) -> int:
        return int(self.ends[-1]) if self.ends is not None and len(self.ends) else 0


# ---------------------------------------------------------------------- reading the raw tree
def _sync(coro):
    from zarr.core.sync import sync

    return sync(coro)


async def _collect(gen) -> list[str]:
    return [x async for x in gen]


def _list_dir(zstore, prefix: str) -> list[str]:
    try:
        return sorted(_sync(_collect(zstore.list_dir(prefix))))
    except (FileNotFoundError, NotADirectoryError, KeyError):
        return []


def _list_prefix(zstore, prefix: str) -> set[str]:
    try:
        return set(_sync(_collect(zstore.list_prefix(prefix))))
    except (FileNotFoundError, NotADirectoryError, KeyError):
        return set()


def _get_bytes(zstore, key: str, suffix: int | None = None) -> bytes | None:
    """The bytes of `key` (only its last `suffix` bytes when given)."""
    from zarr.abc.store import SuffixByteRequest
    from zarr.core.buffer import default_buffer_prototype

    request = SuffixByteRequest(suffix) if suffix else None
    buf = _sync(zstore.get(key, prototype=default_buffer_prototype(), byte_range=request))
    return None if buf is None else buf.to_bytes()


def read_failure_reason(exc: BaseException, text: str | None = None) -> str:
    """A short, one-line account of why a read failed."""
    text = str(exc) if text is None else text
    text = text.strip().splitlines()[-1] if text.strip() else ""
    if "checksum" in text.lower():
        return "checksum mismatch (crc32c)"
    if isinstance(exc, PermissionError) or "Permission denied" in text:
        return "unreadable (permission denied)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"unreadable ({exc.strerror})"
    text = text if len(text) <= 100 else text[:97] + "..."
    if any(w in text for w in ("reshape", "buffer size", "size mismatch")):
        return f"does not decode to its shape and dtype ({type(exc).__name__}: {text}; zarr.json changed?)"
    return f"does not decode ({type(exc).__name__}: {text})" if text else f"does not decode ({type(exc).__name__})"


def open_raw_group(path: str | os.PathLike) -> zarr.Group:
    """The root zarr group at `path` (v2 or v3, directory, .zip or fsspec URL), read-only."""
    path = str(path)
    if not store_exists(path):
        raise UserError(f"{path}: no such file or directory (expected a zarr episode store)")
    try:
        group = zarr.open_group(_open_zarr_store(path, read_only=True), mode="r")
    except UserError:
        raise
    except Exception as exc:  # zarr raises several types for "not a group here"
        raise UserError(f"{path}: not a zarr store (expected a zarr group with data/ and meta/episode_ends)") from exc
    return group


def _open_node(zstore, node: str, kids: list[str]) -> tuple[Any, str | None]:
    """(array, None) or (None, the problem) for the entry `node` of the store."""
    if not kids:
        return None, "a file where an array directory should be; expected an array (a directory with zarr.json)"
    if not METADATA_FILES & set(kids):
        return None, "a directory without array metadata (zarr.json deleted?); expected an array"
    try:
        obj = zarr.open(store=zstore, path=node, mode="r")
    except Exception as exc:
        text = (str(exc).strip().splitlines() or [""])[0][:100]
        return None, f"metadata unreadable ({type(exc).__name__}: {text}); expected valid zarr.json"
    if not isinstance(obj, zarr.Array):
        return None, "is a group; expected an array of per-step values"
    return obj, None


def _arrays_under(zstore, prefix: str, report: Report, blocks: bool) -> dict[str, zarr.Array]:
    arrays = {}
    for name in _list_dir(zstore, prefix):
        if name in METADATA_FILES or name.startswith("."):
            continue
        node = f"{prefix}/{name}"
        arr, problem = _open_node(zstore, node, _list_dir(zstore, node))
        key = name if prefix == "data" else node
        if problem:
            report.problems.append(Problem(node, problem, key=key, blocks=blocks or problem.startswith("metadata")))
        else:
            arrays[name] = arr
    return arrays


def _inventory(path: str, robolearn: bool) -> tuple[Report, Any]:
    """The report's arrays, attrs and inventory problems; raises UserError if `path` is no zarr store at all."""
    if not store_exists(path):
        raise UserError(f"{path}: no such store (no such file or directory; expected a zarr episode store)")
    try:
        zstore = _open_zarr_store(path, read_only=True)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{path}: not a zarr store (expected a zarr group with data/ and meta/episode_ends)") from exc
    report = Report(path)
    if hasattr(zstore, "_ensure_open"):  # a zip store opens its archive here
        _sync(zstore._ensure_open())
    top = _list_dir(zstore, "")
    try:
        root = zarr.open_group(zstore, mode="r")
        report.attrs = dict(root.attrs)
    except Exception as exc:
        if "data" not in top and "meta" not in top:
            raise UserError(f"{path}: not a zarr store (expected a zarr group with data/ and meta/episode_ends)") from exc
        what = "missing" if not METADATA_FILES & set(top) else f"unreadable ({read_failure_reason(exc)})"
        report.problems.append(Problem("zarr.json", f"root metadata {what}; expected the store's root group "
                                       f"(format, statistics, task attrs)", blocks=True))
    if "data" not in top:
        report.problems.append(Problem("data", "missing (expected a group of per-step arrays)", blocks=True))
    report.data = _arrays_under(zstore, "data", report, blocks=False)
    report.meta = _arrays_under(zstore, "meta/episodes", report, blocks=False)
    ends_kids = _list_dir(zstore, "meta/episode_ends")
    if "meta" not in top or ("episode_ends" not in _list_dir(zstore, "meta")):
        report.problems.append(Problem("meta/episode_ends", "missing (expected a 1-d int array of cumulative episode ends)",
                                       key="meta/episode_ends", blocks=True))
        ends_arr = None
    else:
        ends_arr, problem = _open_node(zstore, "meta/episode_ends", ends_kids)
        if problem:
            report.problems.append(Problem("meta/episode_ends", problem, key="meta/episode_ends", blocks=True))
    if ends_arr is not None and (len(ends_arr.shape) != 1 or not np.issubdtype(ends_arr.dtype, np.integer)):
        report.problems.append(Problem("meta/episode_ends", f"shape {ends_arr.shape} {ends_arr.dtype}; expected a 1-d "
                                       f"integer array of cumulative episode ends", key="meta/episode_ends", blocks=True))
        ends_arr = None
    if robolearn and report.attrs:  # the keys the store's own records name must exist
        named = [k for k in (report.attrs.get("stats") or {})] + list(report.attrs.get("image_codecs") or {})
        listed = {p.key for p in report.problems}
        for key in dict.fromkeys(named):
            if key not in report.data and key not in listed:
                report.problems.append(Problem(f"data/{key}", "missing (the store's records list it: deleted?); expected "
                                               "an array", key=key))
    return report, (zstore, ends_arr)


# ---------------------------------------------------------------------- episode ends and lengths
def _ends_values(ends_arr: zarr.Array, report: Report) -> np.ndarray | None:
    try:
        return np.asarray(ends_arr[:], dtype=np.int64)
    except Exception as exc:
        report.problems.append(Problem("meta/episode_ends", f"{read_failure_reason(exc)}; expected readable episode ends",
                                       key="meta/episode_ends", blocks=True))
        return None


def episode_ends_problems(values: np.ndarray) -> list[str]:
    problems = []
    if len(values) and values[0] <= 0:
        problems.append(f"first end is {values[0]}; expected > 0 (episode 0 has no steps)")
    bad = np.flatnonzero(np.diff(values) <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        problems.append(f"not strictly increasing at episode {i} ({values[i - 1]} then {values[i]}); expected cumulative ends")
    return problems


def read_episode_ends(group: zarr.Group) -> tuple[np.ndarray | None, list[str]]:
    """meta/episode_ends of an open group as int64 plus the problems with it (None if unusable)."""
    try:
        ends = group["meta/episode_ends"]
    except KeyError:
        return None, ["meta/episode_ends: missing (expected a 1-d int array of cumulative episode ends)"]
    if not isinstance(ends, zarr.Array) or len(ends.shape) != 1 or not np.issubdtype(ends.dtype, np.integer):
        return None, ["meta/episode_ends: expected a 1-d integer array of cumulative episode ends"]
    values = np.asarray(ends[:], dtype=np.int64)
    return values, [f"meta/episode_ends: {p}" for p in episode_ends_problems(values)]


def _episodes_text(ends: np.ndarray | None, lo: int, hi: int, unit: str = "steps") -> str:
    """'steps 0-15, episodes 0-2' for rows [lo, hi)."""
    rows = f"{unit} {lo}-{hi - 1}" if hi - lo > 1 else f"{unit.rstrip('s')} {lo}"
    if unit != "steps":
        eps = f"episode {lo}" if hi - lo == 1 else f"episodes {lo}-{hi - 1}"
        return eps
    if ends is None or not len(ends) or lo >= ends[-1]:
        return rows
    first = int(np.searchsorted(ends, lo, side="right"))
    last = min(int(np.searchsorted(ends, hi - 1, side="right")), len(ends) - 1)
    return f"{rows}, episode {first}" if first == last else f"{rows}, episodes {first}-{last}"


def _length_problems(report: Report, ends: np.ndarray) -> None:
    n_steps = int(ends[-1]) if len(ends) else 0
    for key, arr in report.data.items():
        if len(arr.shape) == 0:
            report.problems.append(Problem(f"data/{key}", "0-d array; expected steps along axis 0", key=key, blocks=True))
        elif arr.shape[0] < n_steps:
            report.problems.append(Problem(f"data/{key}", f"{arr.shape[0]} steps, expected {n_steps} (episode_ends[-1]); "
                                           f"truncated", key=key, rows=(arr.shape[0], n_steps), blocks=True))
        elif arr.shape[0] > n_steps:
            report.problems.append(Problem(f"data/{key}", f"{arr.shape[0]} steps, expected {n_steps} (episode_ends[-1]); "
                                           f"uncommitted steps past the last episode", key=key, tail=True))
    for name, arr in report.meta.items():
        if arr.shape[:1] != (len(ends),):
            report.problems.append(Problem(f"meta/episodes/{name}", f"shape {arr.shape}, expected ({len(ends)},) (one value "
                                           f"per episode)", key=f"meta/episodes/{name}", tail=arr.shape[:1] > (len(ends),),
                                           rows=(arr.shape[0], len(ends)) if arr.shape[:1] < (len(ends),) else None,
                                           blocks=arr.shape[:1] < (len(ends),)))


def _stats_channels(stats: dict, key: str) -> int | None:
    entry = stats.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("min"), list):
        return len(entry["min"])
    return None


def _row_channels(arr: zarr.Array) -> int:
    """The channel count `EpisodeStore._moments` keeps for this array's statistics."""
    if len(arr.shape) <= 1:
        return 1
    if len(arr.shape) == 2:
        return int(arr.shape[1])
    return int(arr.shape[-1])


def _schema_problems(report: Report) -> None:
    codecs = report.attrs.get("image_codecs") or {}
    stats = report.attrs.get("stats") or {}
    for key, arr in report.data.items():
        camera = key.endswith("_image") or key in codecs
        if camera and (arr.dtype != np.uint8 or len(arr.shape) != 4):
            report.problems.append(Problem(f"data/{key}", f"{arr.dtype} {tuple(arr.shape)}; expected uint8 camera frames "
                                           f"(T, H, W, C)", key=key))
            continue
        want = _stats_channels(stats, key) if isinstance(stats, dict) else None
        if want is not None and want != _row_channels(arr):
            report.problems.append(Problem(f"data/{key}", f"shape {tuple(arr.shape)} has {_row_channels(arr)} channel(s), "
                                           f"its statistics {want}; expected the shape it was written with", key=key))


# ---------------------------------------------------------------------- chunks
def has_checksums(arr: zarr.Array) -> bool:
    """True if every chunk of `arr` ends with a crc32c (format 2 arrays)."""
    from zarr.codecs import Crc32cCodec, ShardingCodec

    codecs = list(getattr(arr.metadata, "codecs", ()) or ())
    for codec in list(codecs):
        if isinstance(codec, ShardingCodec):
            codecs += list(codec.codecs)
    return any(isinstance(c, Crc32cCodec) for c in codecs)


def _sharding(arr: zarr.Array):
    from zarr.codecs import ShardingCodec

    codecs = getattr(arr.metadata, "codecs", ()) or ()
    return codecs[0] if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec) else None


def _index_layout_known(codec) -> bool:
    """The shard layout robolearn writes: index at the end, little-endian uint64 pairs + crc32c."""
    from zarr.codecs import BytesCodec, Crc32cCodec

    kinds = [type(c) for c in codec.index_codecs]
    return str(getattr(codec.index_location, "value", codec.index_location)) == "end" and kinds == [BytesCodec, Crc32cCodec]


def _shard_index(raw: bytes, n_inner: int, file_size: int) -> tuple[np.ndarray | None, str | None]:
    """(offset, nbytes) per inner chunk from a shard's last bytes `raw`, or the problem with its index."""
    size = 16 * n_inner + 4
    if file_size < size or len(raw) < size:
        what = "empty" if not file_size else f"{file_size} bytes"
        return None, f"{what}, shorter than its {size}-byte shard index (truncated or emptied)"
    import google_crc32c

    body, stored = raw[-size:-4], raw[-4:]
    if np.uint32(google_crc32c.value(body)).tobytes() != stored:
        return None, "shard index checksum mismatch (overwritten or truncated)"
    entries = np.frombuffer(body, dtype="<u8").reshape(n_inner, 2)
    present = ~((entries[:, 0] == EMPTY) & (entries[:, 1] == EMPTY))
    if np.any(entries[present, 0] + entries[present, 1] > file_size - size):
        return None, "shard index points past the end of the shard (truncated)"
    return entries, None


def _regions(arr: zarr.Array, unit: tuple[int, ...], n_rows: int):
    """(grid coords, region slices) of every storage unit holding one of the first n_rows rows."""
    grid = [range(-(-s // u)) if s else range(0) for s, u in zip(arr.shape, unit)]
    for coords in itertools.product(*grid):
        if coords[0] * unit[0] >= n_rows:
            continue
        yield coords, tuple(slice(c * u, min((c + 1) * u, s)) for c, u, s in zip(coords, unit, arr.shape))


@dataclass
class _Scan:
    """What one array's chunk scan collects: problems, non-finite rows and value ranges."""

    where: str
    key: str
    rows_unit: str
    ends: np.ndarray | None
    problems: list[Problem] = field(default_factory=list)
    bad_rows: list[int] = field(default_factory=list)
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None

    def add(self, lo: int, hi: int, label: str, what: str, blocks: bool = False) -> None:
        place = _episodes_text(self.ends, lo, hi, self.rows_unit)
        self.problems.append(Problem(self.where, f"{label} ({place}): {what}", key=self.key, rows=(lo, hi), blocks=blocks))


def _look_at_values(scan: _Scan, block: np.ndarray, start: int, ranges: bool) -> None:
    if not len(block) or not (np.issubdtype(block.dtype, np.number) or block.dtype == np.bool_):
        return
    if np.issubdtype(block.dtype, np.floating):
        finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        scan.bad_rows += (start + np.flatnonzero(~finite)).tolist()
        block = block[finite]
    if ranges and len(block):
        x = block.reshape(len(block), -1) if block.ndim <= 2 else block.reshape(-1, block.shape[-1])
        x = x.astype(np.float64)
        lo, hi = x.min(0), x.max(0)
        scan.lo = lo if scan.lo is None else np.minimum(scan.lo, lo)
        scan.hi = hi if scan.hi is None else np.maximum(scan.hi, hi)


def scan_chunks(zstore, arr: zarr.Array, where: str, key: str, n_rows: int, ends: np.ndarray | None,
                rows_unit: str = "steps", decode: bool = True, values: bool = True, ranges: bool = False,
                decode_rows: Iterable[int] | None = None) -> _Scan:
    """Check every chunk of `arr` holding one of its first `n_rows` rows.

    decode=False checks only that chunk files exist (checksummed arrays) and that shard indexes
    are intact; `decode_rows` limits decoding to the chunks holding those rows."""
    scan = _Scan(where, key, rows_unit, ends)
    n_rows = min(n_rows, arr.shape[0]) if len(arr.shape) else 0
    if not n_rows:
        return scan
    complete = has_checksums(arr)
    sharding = _sharding(arr)
    unit = tuple(arr.shards) if sharding is not None else tuple(arr.chunks)
    inner = tuple(arr.chunks)
    stored = _list_prefix(zstore, f"{arr.path}/") if complete else set()
    wanted = None if decode_rows is None else set(int(r) for r in decode_rows)
    for coords, region in _regions(arr, unit, n_rows):
        lo, hi = region[0].start, min(region[0].stop, n_rows)
        name = arr.metadata.encode_chunk_key(coords)
        label = f"shard {name}" if sharding is not None else f"chunk {name}"
        file_key = f"{arr.path}/{name}"
        if complete and file_key not in stored:
            scan.add(lo, hi, label, "missing; expected every chunk of a checksummed array to exist (not zeros)")
            continue
        if sharding is not None and complete and _index_layout_known(sharding):
            n_inner = int(np.prod([u // c for u, c in zip(unit, inner)]))
            try:  # the index only: a reader's check must not read every frame
                file_size = int(_sync(zstore.getsize(file_key)))
                raw = _get_bytes(zstore, file_key, suffix=min(file_size, 16 * n_inner + 4)) if file_size else b""
            except Exception as exc:
                scan.add(lo, hi, label, f"{read_failure_reason(exc)}; expected a readable shard")
                continue
            entries, problem = _shard_index(raw or b"", n_inner, file_size)
            if problem:
                scan.add(lo, hi, label, f"{problem}; expected an intact shard")
                continue
            if entries is not None:
                grid = tuple(u // c for u, c in zip(unit, inner))
                for j in np.flatnonzero((entries[:, 0] == EMPTY) & (entries[:, 1] == EMPTY)):
                    sub = np.unravel_index(int(j), grid)
                    start = [c * u + s * i for c, u, s, i in zip(coords, unit, sub, inner)]
                    if all(st < dim for st, dim in zip(start, arr.shape)) and start[0] < n_rows:
                        scan.add(start[0], min(start[0] + inner[0], n_rows), f"{label} inner chunk {int(j)}",
                                 "missing from the shard; expected every chunk to be written (not zeros)")
        if not decode or (wanted is not None and not any(lo <= r < hi for r in wanted)):
            continue
        if wanted is not None and sharding is not None:  # only the frames asked for
            for r in sorted(r for r in wanted if lo <= r < hi):
                a = r - (r - region[0].start) % inner[0]
                try:
                    arr[(slice(a, min(a + inner[0], hi)),) + region[1:]]
                except Exception as exc:
                    scan.add(a, min(a + inner[0], hi), f"{label} inner chunk {(a - region[0].start) // inner[0]}",
                             f"{read_failure_reason(exc)}; expected an intact chunk")
            continue
        try:
            block = arr[(slice(lo, hi),) + region[1:]]
        except Exception as exc:
            if sharding is None:
                scan.add(lo, hi, label, f"{read_failure_reason(exc)}; expected an intact chunk")
                continue
            for a in range(lo, hi, inner[0]):  # find the inner chunks (frames) that fail
                b = min(a + inner[0], hi)
                try:
                    arr[(slice(a, b),) + region[1:]]
                except Exception as inner_exc:
                    scan.add(a, b, f"{label} inner chunk {(a - region[0].start) // inner[0]}",
                             f"{read_failure_reason(inner_exc)}; expected an intact chunk")
            continue
        if values:
            _look_at_values(scan, block, lo, ranges)
    return scan


def _value_problems(scan: _Scan, arr: zarr.Array, stats: dict, fresh: bool) -> list[Problem]:
    problems = []
    if scan.bad_rows:
        rows = np.array(sorted(set(scan.bad_rows)))
        step = int(rows[0])
        kind = "NaN" if np.isnan(np.asarray(arr[step : step + 1], dtype=np.float64)).any() else "inf"
        where = _episodes_text(scan.ends, step, step + 1, scan.rows_unit).replace("step ", "", 1)
        more = f" and {len(rows) - 1} more step(s)" if len(rows) > 1 else ""
        problems.append(Problem(scan.where, f"{kind} at step {where}{more}; expected finite values", key=scan.key,
                                rows=(step, step + 1), more_rows=tuple(int(r) for r in rows[1:])))
    entry = stats.get(scan.key) if isinstance(stats, dict) else None
    if fresh and scan.lo is not None and isinstance(entry, dict) and "min" in entry:
        smin, smax = np.asarray(entry["min"], np.float64), np.asarray(entry["max"], np.float64)
        if smin.shape == scan.lo.shape:
            # far outside only: a dtype changed in the metadata reinterprets the bytes (floats read as
            # ints are ~1e9), while statistics set on purpose (one normalisation shared by several
            # stores) may leave the data somewhat outside the recorded range
            tol = 100 * (1 + (smax - smin) + np.maximum(np.abs(smin), np.abs(smax)))
            off = (scan.lo < smin - tol) | (scan.hi > smax + tol)
            if off.any():
                c = int(np.argmax(off))
                problems.append(Problem(scan.where, f"values span [{scan.lo[c]:.4g}, {scan.hi[c]:.4g}] in channel {c}, "
                                        f"its statistics recorded [{smin[c]:.4g}, {smax[c]:.4g}]; expected the data they "
                                        f"were computed from (dtype changed in the metadata, or bytes changed?)",
                                        key=scan.key))
    return problems


# ---------------------------------------------------------------------- the scan
def format_problems(attrs: dict) -> list[str]:
    fmt, version = attrs.get("format"), attrs.get("format_version")
    if fmt != FORMAT_NAME:
        return [f"attrs/format: {fmt!r}, expected {FORMAT_NAME!r} (import peer formats with `robolearn data import`)"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        return [f"attrs/format_version: {version!r}, expected an int <= {FORMAT_VERSION}"]
    return []


def _stats_fresh(attrs: dict, key: str, n_steps: int) -> bool:
    entry = (attrs.get("stats") or {}).get(key)
    return isinstance(entry, dict) and entry.get("count") == n_steps


def scan(path: str | os.PathLike, robolearn: bool = True, quick: bool = False, keys: Iterable[str] | None = None,
         values: bool = True, stats: bool = True, all_frames: bool = True) -> Report:
    """Every problem with the store at `path` (see the module docstring).

    quick=True: structure, schema, chunk files and shard indexes only (no decoding).
    keys: read (decode, check values of) only these data keys; the others get the structural
    checks and are listed in `report.skipped`. all_frames=False (and any `keys`): decode only the
    first and last frame of each camera (its chunk files and shard indexes are all checked).
    Raises UserError if `path` is no zarr store at all."""
    path = str(path)
    report, (zstore, ends_arr) = _inventory(path, robolearn)
    if robolearn and report.attrs:
        report.problems += [Problem(p.split(": ", 1)[0], p.split(": ", 1)[1]) for p in format_problems(report.attrs)]
    ends = None
    if ends_arr is not None:
        ends = _ends_values(ends_arr, report)
    if ends is not None:
        report.raw_ends = ends
        for p in episode_ends_problems(ends):
            report.problems.append(Problem("meta/episode_ends", p, key="meta/episode_ends", blocks=True))
        longest = max((a.shape[0] for a in report.data.values() if len(a.shape)), default=0)
        if len(ends) and report.data and ends[-1] > longest and not any(p.where == "meta/episode_ends" for p in report.problems):
            past = int(np.searchsorted(ends, longest, side="right"))
            report.problems.append(Problem("meta/episode_ends", f"episode {past} ends at step {int(ends[past])}, past the "
                                           f"{longest} steps of data; expected ends within the data", key="meta/episode_ends",
                                           blocks=True))
        if any(p.where == "meta/episode_ends" for p in report.problems):
            report.ends = None
        else:
            report.ends = ends
            _length_problems(report, ends)
    _schema_problems(report)
    usable = report.ends
    n_steps = report.n_steps if usable is not None else None
    stats_rec = report.attrs.get("stats") or {}
    selected = None if keys is None else set(keys)
    schema_bad = {p.key for p in report.problems if p.key and p.rows is None and not p.tail}
    for key, arr in report.data.items():
        rows = n_steps if n_steps is not None else (arr.shape[0] if len(arr.shape) else 0)
        read = selected is None or key in selected
        if not read:
            report.skipped.append(key)
        camera = len(arr.shape) == 4 and arr.dtype == np.uint8
        if (selected is not None or not all_frames) and read and camera:  # a reader's quick check: files, indexes, first and last frame
            s = scan_chunks(zstore, arr, f"data/{key}", key, rows, usable, decode=not quick, decode_rows=[0, rows - 1])
        else:
            s = scan_chunks(zstore, arr, f"data/{key}", key, rows, usable, decode=read and not quick and key not in schema_bad,
                            values=values, ranges=not camera)
        report.problems += s.problems
        fresh = robolearn and n_steps is not None and _stats_fresh(report.attrs, key, n_steps)
        report.problems += [p for p in _value_problems(s, arr, stats_rec, fresh)]
    for name, arr in report.meta.items():
        rows = len(usable) if usable is not None else arr.shape[0]
        s = scan_chunks(zstore, arr, f"meta/episodes/{name}", f"meta/episodes/{name}", rows, usable, rows_unit="episodes",
                        decode=not quick, values=False)
        report.problems += s.problems
    if ends_arr is not None and ends is not None:
        s = scan_chunks(zstore, ends_arr, "meta/episode_ends", "meta/episode_ends", ends_arr.shape[0], None,
                        rows_unit="episodes", decode=False)
        for p in s.problems:
            p.blocks = True
        report.problems += s.problems
    if robolearn and stats and report.attrs and usable is not None and not _structural(report):
        report.problems += [Problem(p.split(": ", 1)[0], p.split(": ", 1)[1]) for p in
                            _stats_problems(report.attrs, report.data, report.n_steps)]
    if robolearn and report.attrs.get("format") == FORMAT_NAME:
        plain = [k for k, a in {**report.data, **{f"meta/episodes/{m}": a for m, a in report.meta.items()}}.items()
                 if not has_checksums(a)]
        if plain:
            report.notes.append(f"format_version {report.attrs.get('format_version')}: {len(plain)} array(s) without chunk "
                                f"checksums ({', '.join(plain[:4])}{', ...' if len(plain) > 4 else ''}): a deleted chunk "
                                f"reads as zeros and a changed byte may go unnoticed; `robolearn data rechunk STORE` adds them")
    return report


def _structural(report: Report) -> bool:
    return any(p.blocks or p.tail for p in report.problems)


def _stats_problems(attrs: dict, arrays: dict[str, zarr.Array], n_steps: int) -> list[str]:
    stats = attrs.get("stats")
    if not isinstance(stats, dict):
        return ["attrs/stats: missing (run `robolearn data stats STORE`)"]
    problems = []
    for key, arr in arrays.items():
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            continue
        entry = stats.get(key)
        if not isinstance(entry, dict) or not all(s in entry for s in ("min", "max", "mean", "std")):
            problems.append(f"attrs/stats/{key}: missing (run `robolearn data stats STORE`)")
        elif entry.get("count") != n_steps:
            problems.append(f"attrs/stats/{key}: computed over {entry.get('count')} steps, expected {n_steps} "
                            f"(stale; run `robolearn data stats STORE`)")
    return problems


def stats_problems(group: zarr.Group, n_steps: int) -> list[str]:
    """attrs["stats"] missing or stale for some numeric data key."""
    try:
        arrays = {name: arr for name, arr in sorted(group["data"].arrays())}
    except Exception:
        arrays = {}
    return _stats_problems(dict(group.attrs), arrays, n_steps)


def _printable(report: Report) -> list[str]:
    return [str(p) for p in report.problems]


def validate_store(path: str | os.PathLike, robolearn: bool = True, values: bool = True, stats: bool = True,
                   quick: bool = False) -> list[str]:
    """All problems with the store at `path` as `"<where>: <problem>"` strings ([] when sound).

    Raises UserError if `path` does not exist or is not a zarr group at all."""
    return _printable(scan(path, robolearn=robolearn, quick=quick, values=values, stats=stats))


def require_valid(path: str | os.PathLike, robolearn: bool = True, values: bool = True, stats: bool = False) -> None:
    """Raise UserError naming the first problem (and how many more) unless the store is sound
    (every low-dim chunk decoded; cameras: chunk files, shard indexes, first and last frame)."""
    problems = _printable(scan(path, robolearn=robolearn, values=values, stats=stats, all_frames=False))
    if problems:
        more = f" (and {len(problems) - 1} more problem(s); run `robolearn data validate`)" if len(problems) > 1 else ""
        raise UserError(f"{path}: {problems[0]}{more}")


# ---------------------------------------------------------------------- readers
def check_before_reading(path: str | os.PathLike, keys: Iterable[str], meta_fields: Iterable[str] = (),
                         command: str = "this command", robolearn: bool = True) -> Report:
    """The quick check a reader runs on open (train, pretrain, importers).

    Every key gets the structural checks; the data `keys` the command reads are checked in
    full for low-dim keys (their values are loaded anyway) and by chunk files, shard indexes
    and the first and last frame for cameras. Raises UserError with one line naming the first
    problem a reader would trip on; damage only in keys it does not read is logged with the
    keys it skipped, and reading goes on."""
    path = str(path)
    keys = [k for k in dict.fromkeys(keys) if k]
    report = scan(path, robolearn=robolearn, keys=keys, stats=False)
    used = set(keys) | {f"meta/episodes/{f}" for f in meta_fields if f}
    fatal, ignored = [], []
    for p in report.problems:
        if p.tail:
            continue
        if p.blocks or p.key is None or p.key in used or p.key == "meta/episode_ends":
            fatal.append(p)
        else:
            ignored.append(p)
    if fatal:
        more = f" (and {len(fatal) - 1} more)" if len(fatal) > 1 else ""
        raise UserError(f"{path}: {fatal[0]}{more}; `robolearn data validate {path}` lists every problem "
                        f"(`robolearn data repair` recovers the intact episodes)")
    if report.skipped:
        damaged = sorted({p.key for p in ignored if p.key})
        note = f"; damage found in {', '.join(damaged)}: {ignored[0]}" if damaged else ""
        (log.warning if damaged else log.info)("%s: %s reads %s; did not check the chunks of %s (not read)%s", path,
                                               command, ", ".join(keys) or "no data keys", ", ".join(report.skipped), note)
    elif ignored:
        log.warning("%s: %s does not read %s, which is damaged: %s", path, command, ignored[0].key, ignored[0])
    return report


def store_read_failure(exc: BaseException, path: str, step: int, checkpoint: str) -> UserError | None:
    """A one-line UserError for a chunk that failed while training (checksum, decode, unreadable file),
    or None when `exc` did not come from reading the store (a bug keeps its traceback)."""
    import traceback

    text = str(exc)
    damaged = type(exc).__name__ == "StoreDamaged" or "StoreDamaged" in text
    files = [f.filename for f in traceback.extract_tb(exc.__traceback__)] if exc.__traceback__ else []
    from_zarr = any(m in f for f in files for m in ("/zarr/", "/numcodecs/", "google_crc32c"))
    wrapped = "Original Traceback" in text  # re-raised from a DataLoader worker: the message holds the traceback
    if wrapped:
        from_zarr = any(m in text for m in ("/zarr/", "/numcodecs/", "google_crc32c"))
        text = [line for line in text.splitlines() if line.strip()][-1]
        text = text.partition(": ")[2] or text
    if not (damaged or from_zarr):
        return None
    what = text.strip().splitlines()[0] if damaged and text.strip() else read_failure_reason(exc, text)
    what = what.removeprefix(f"{path}: ").split("; run `robolearn data validate")[0]
    return UserError(f"{path}: {what}; training stopped at step {step} ({checkpoint}); "
                     f"`robolearn data validate {path}` lists every damaged chunk")
