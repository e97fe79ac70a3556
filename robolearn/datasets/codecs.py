"""Camera codecs: how the frames of one image key are compressed inside an episode store.

A camera array (uint8, T x H x W x C) is stored one frame per (inner) chunk. Its camera codec,
chosen when the store is created and recorded in `attrs["image_codecs"]` as well as in the
array's own zarr metadata, turns a frame into bytes and back. A spec is a short string:

    blosc          lossless: Blosc (zstd, level 3, bitshuffle) over the raw pixels, what every
                   store used before format 2. Exact, but rendered or camera RGB barely shrinks.
    webp:Q         lossy WebP (libwebp), Q = quality 1-100
    jpeg:Q         lossy baseline JPEG (libjpeg-turbo), Q = quality 1-100
    jpegxl:Q       lossy JPEG XL (libjxl), Q = quality 1-100 (libjxl maps it to a distance)
    avif:Q         lossy AVIF (libavif, AV1 intra), Q = quality 1-100 (100 = lossless)
    jpeg2k:Q       lossy JPEG 2000 (OpenJPEG), Q = the target PSNR in dB, 1-100 (what
                   diffusion_policy's real-robot stores use, through the same library at 50)

A lossy spec without `:Q` takes the codec's default quality (`LOSSY[name].default`). The lossy
codecs come from `imagecodecs` (a maintained binding of the reference libraries, the one
diffusion_policy uses for its real-robot stores), each used at its library's default speed
setting, except AVIF at speed 8 (libavif's default spends 0.1-1 s on one 84x84 frame here,
speed 8 about 10 ms at nearly the same size). They take RGB frames only (C = 3); depth and point clouds are float arrays and always
stay lossless (the store never asks this module about them; a lossy spec for a key that is not
a camera is refused by `check_image_key`).

Each codec is a zarr v3 array -> bytes codec (`ImageCodec`, registered with zarr under
`robolearn.<name>`, and as the package's `zarr.codecs` entry points), so a store opens through
plain zarr once robolearn is installed, and it works as the inner-chunk codec of a sharded
array. `image_chunk_codecs` gives the create_array kwargs of one frame's pipeline, crc32c last.
The store's fast read path skips zarr and calls `decode_chunk` on the bytes of each frame.

Errors are one line (`UserError`) naming the codec and the package: an unknown codec, a
quality out of range, a lossy codec for a non-camera key, or a store whose codec the installed
imagecodecs cannot decode (it is checked when the array's metadata is read, before any data).

The default for new stores, webp:90, was picked in `benchmarks/codec.py` (bytes per frame against
LeRobot's AV1 videos of the same frames, PSNR/SSIM, encode cost, windows/s and an image policy's
success on a lossy vs a lossless store): AVIF is a little smaller at the same PSNR but decodes
several times slower, JPEG decodes fastest but needs over 3x AV1's bytes for 38 dB. Pass
"blosc" to keep frames exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec
from zarr.registry import register_codec

from robolearn.errors import UserError

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

# The measured default (benchmarks/results/codec.md, 12 scripted Lift episodes, two 84x84 cameras): 1.6x
# the bytes of LeRobot's default AV1 videos of the same frames at 41 dB PSNR (AV1: 36.7 dB), decoding about
# as fast as the lossless store, and an image BC policy trained on it as successful as on lossless frames.
DEFAULT_IMAGE_CODEC = "webp:90"
LOSSLESS = "blosc"
PACKAGE = "imagecodecs"
ZARR_PREFIX = "robolearn."


@dataclass(frozen=True)
class _Lossy:
    library: str  # the imagecodecs codec name (imagecodecs.<LIBRARY>.available)
    provider: str  # the C library behind it, for error messages
    default: int  # quality when the spec gives none
    encode_kwargs: tuple = ()  # fixed keyword arguments of <lib>_encode besides level


LOSSY: dict[str, _Lossy] = {
    "webp": _Lossy("WEBP", "libwebp", 90, (("lossless", False),)),
    "jpeg": _Lossy("JPEG8", "libjpeg-turbo", 90),
    "jpegxl": _Lossy("JPEGXL", "libjxl", 80),
    "avif": _Lossy("AVIF", "libavif", 70, (("speed", 8),)),
    "jpeg2k": _Lossy("JPEG2K", "OpenJPEG", 40),
}
QUALITY_RANGE = (1, 100)


@dataclass(frozen=True)
class ImageCodecSpec:
    """A camera codec and its quality (None for the lossless codec). str() gives the spec string."""

    name: str
    quality: int | None = None

    def __str__(self) -> str:
        return self.name if self.quality is None else f"{self.name}:{self.quality}"

    @property
    def lossless(self) -> bool:
        return self.name == LOSSLESS


# ---------------------------------------------------------------------- parsing and checking
def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def _library(spec: ImageCodecSpec, where: str = ""):
    """The imagecodecs module, after checking it can encode and decode `spec`; UserError otherwise."""
    lossy = LOSSY[spec.name]
    try:
        import imagecodecs
    except ImportError:
        raise UserError(f"{_prefix(where)}camera codec {spec} needs the {PACKAGE} package, which is not "
                        f"installed (pip install {PACKAGE})") from None
    if not getattr(imagecodecs, lossy.library).available:
        raise UserError(f"{_prefix(where)}camera codec {spec}: the installed {PACKAGE} {imagecodecs.__version__} "
                        f"was built without {lossy.provider}; install a {PACKAGE} build with {lossy.library} support")
    return imagecodecs


def parse_image_codec(text: str | ImageCodecSpec, where: str = "") -> ImageCodecSpec:
    """'blosc' | 'webp' | 'webp:90' | ... -> ImageCodecSpec; UserError naming `where` if unusable here."""
    if isinstance(text, ImageCodecSpec):
        text = str(text)
    name, sep, quality = str(text).strip().lower().partition(":")
    known = ", ".join([LOSSLESS, *(f"{n}[:Q]" for n in LOSSY)])
    if name == LOSSLESS:
        if sep:
            raise UserError(f"{_prefix(where)}camera codec {text!r}: {LOSSLESS} is lossless and takes no quality")
        return ImageCodecSpec(LOSSLESS)
    if name not in LOSSY:
        raise UserError(f"{_prefix(where)}unknown camera codec {text!r}; expected one of {known}")
    if not sep:
        q = LOSSY[name].default
    else:
        try:
            q = int(quality)
        except ValueError:
            raise UserError(f"{_prefix(where)}camera codec {text!r}: quality {quality!r} is not an integer "
                            f"(expected {name}:Q with Q in {QUALITY_RANGE[0]}-{QUALITY_RANGE[1]})") from None
        if not QUALITY_RANGE[0] <= q <= QUALITY_RANGE[1]:
            raise UserError(f"{_prefix(where)}camera codec {text!r}: quality {q} out of range "
                            f"(expected {QUALITY_RANGE[0]}-{QUALITY_RANGE[1]})")
    spec = ImageCodecSpec(name, q)
    _library(spec, where)
    return spec


def parse_image_codec_options(items: list[str] | str | Mapping[str, str] | None, where: str = "--image-codec"):
    """Command-line / recipe form -> what EpisodeStore.create takes: None, one spec string for every
    camera, or {key: spec} where the key "*" holds the spec of cameras not named.

    Accepts a list of "SPEC" / "KEY=SPEC" items (repeated --image-codec flags), one such string,
    or a {key: spec} table (recipes: image_codec = {agentview = "webp:90"}); each spec is checked.
    """
    if items is None or items == []:
        return None
    if isinstance(items, Mapping):
        items = [f"{k}={v}" for k, v in items.items()]
    elif isinstance(items, str):
        items = [items]
    default, per_key = None, {}
    for item in items:
        key, sep, text = str(item).partition("=")
        if not sep:
            if default is not None:
                raise UserError(f"{where}: camera codec given twice ({default} and {item}); give one SPEC and "
                                f"KEY=SPEC for the others")
            default = str(parse_image_codec(item, where))
            continue
        key = key.strip()
        if not key or key in per_key:
            raise UserError(f"{where}: {item!r}: expected KEY=SPEC with a camera key named once")
        per_key[key] = str(parse_image_codec(text, f"{where} {key}"))
    if not per_key:
        return default
    return {**({"*": default} if default else {}), **per_key}


def codec_for_key(image_codecs: str | Mapping[str, str] | None, key: str, where: str = "") -> ImageCodecSpec:
    """The camera codec of image key `key` under `image_codecs` (None / one spec / {key or "*": spec})."""
    if isinstance(image_codecs, Mapping):
        text = image_codecs.get(key, image_codecs.get("*"))
    else:
        text = image_codecs
    return parse_image_codec(DEFAULT_IMAGE_CODEC if text is None else text, where or f"image_codecs {key}")


def check_image_key(spec: ImageCodecSpec, key: str, shape: tuple, dtype, where: str = "") -> None:
    """UserError unless `spec` can store key `key` (steps of `shape` x `dtype`): a lossy codec needs
    uint8 RGB frames (T, H, W, 3); depth, point clouds and low-dim data stay lossless."""
    if spec.lossless:
        return
    shape = tuple(shape)
    if np.dtype(dtype) != np.uint8 or len(shape) != 4:
        raise UserError(f"{_prefix(where)}{key}: lossy camera codec {spec} is for uint8 camera frames "
                        f"(T, H, W, 3); this key is {np.dtype(dtype)} {shape[1:]} and stays lossless")
    if shape[-1] != 3:
        raise UserError(f"{_prefix(where)}{key}: lossy camera codec {spec} takes RGB frames (3 channels), "
                        f"this key has {shape[-1]}; use {LOSSLESS}")


def is_rgb_camera(shape: tuple, dtype) -> bool:
    """uint8 (T, H, W, 3) arrays: the frames a lossy camera codec can store."""
    return np.dtype(dtype) == np.uint8 and len(shape) == 4 and shape[-1] == 3


def spec_for_array(image_codecs: str | Mapping[str, str] | None, key: str, shape: tuple, dtype,
                   where: str = "") -> ImageCodecSpec:
    """The codec a new camera array `key` (steps of `shape` x `dtype`, T first) is created with.

    A key named in `image_codecs` gets its spec (UserError if that spec is lossy and the key is
    not an RGB camera); other keys get the "*" / single spec, or DEFAULT_IMAGE_CODEC, when they
    are RGB cameras, and lossless blosc otherwise (grayscale or RGBA uint8 frames, masks)."""
    named = isinstance(image_codecs, Mapping) and key in image_codecs
    spec = codec_for_key(image_codecs, key, where)
    if named:
        check_image_key(spec, key, shape, dtype, where)
        return spec
    return spec if is_rgb_camera(tuple(shape), dtype) else ImageCodecSpec(LOSSLESS)


def check_codec_keys(image_codecs: str | Mapping[str, str] | None, arrays: Mapping[str, Any], where: str = "") -> None:
    """Every key named in an {key: spec} `image_codecs` must be a camera array among `arrays`
    (name -> array or (shape, dtype)): a lossy spec for depth or a missing key is refused."""
    if not isinstance(image_codecs, Mapping):
        return
    for key, text in image_codecs.items():
        if key == "*":
            continue
        if key not in arrays:
            raise UserError(f"{_prefix(where)}image_codecs names {key!r}, which is not a data key "
                            f"(has {', '.join(sorted(arrays)) or 'none'})")
        value = arrays[key]
        shape, dtype = value if isinstance(value, tuple) else (tuple(value.shape), value.dtype)
        check_image_key(parse_image_codec(text, where), key, shape, dtype, where)


# ---------------------------------------------------------------------- frames <-> bytes
_BLOSC = None


def _blosc():
    global _BLOSC
    if _BLOSC is None:
        from numcodecs import Blosc

        _BLOSC = Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)
    return _BLOSC


def encode_chunk(spec: ImageCodecSpec, frame: np.ndarray) -> bytes:
    """One chunk of frames ((H, W, C) or (n, H, W, C) uint8) -> its bytes (no checksum).

    Several frames are coded as one image n*H tall (a format-1 store's chunks hold one frame;
    sharded stores hold one frame per inner chunk)."""
    frame = np.ascontiguousarray(frame)
    if spec.lossless:
        return bytes(_blosc().encode(frame))
    if frame.dtype != np.uint8 or frame.ndim not in (3, 4) or frame.shape[-1] != 3:
        raise UserError(f"camera codec {spec}: takes uint8 RGB frames (H, W, 3), got {frame.dtype} {frame.shape}; "
                        f"use {LOSSLESS} for this key")
    lib = _library(spec)
    image = frame.reshape(-1, *frame.shape[-2:])  # (n*H, W, 3)
    encode = getattr(lib, f"{LOSSY[spec.name].library.lower()}_encode")
    return bytes(encode(image, level=spec.quality, **dict(LOSSY[spec.name].encode_kwargs)))


def decode_chunk(spec: ImageCodecSpec, payload: bytes, shape: tuple, out: np.ndarray | None = None) -> np.ndarray:
    """The bytes of one chunk (checksum already checked and removed) -> uint8 array of `shape`.

    `out`, if given, is a C-contiguous uint8 array of `shape` that receives the frames."""
    shape = tuple(shape)
    if spec.lossless:
        raw = _blosc().decode(payload, out=out)
        return (out if out is not None else np.frombuffer(raw, dtype=np.uint8)).reshape(shape)
    lib = _library(spec)
    decode = getattr(lib, f"{LOSSY[spec.name].library.lower()}_decode")
    image = decode(payload, out=None if out is None else out.reshape(-1, *shape[-2:]))
    if image.size != int(np.prod(shape)):
        raise ValueError(f"{spec} chunk decodes to {image.shape}, expected {shape}")
    return image.reshape(shape)


# ---------------------------------------------------------------------- zarr v3 codecs
@dataclass(frozen=True)
class ImageCodec(ArrayBytesCodec):
    """zarr v3 array -> bytes codec for camera frames: metadata {"name": "robolearn.webp",
    "configuration": {"quality": 90}}. Checks at metadata parse time that this machine can
    decode it, so opening a store whose codec is missing fails with one line."""

    is_fixed_size = False
    codec: str
    quality: int

    def __init__(self, *, codec: str, quality: int) -> None:
        spec = parse_image_codec(f"{codec}:{quality}")
        if spec.lossless:
            raise UserError(f"zarr codec {ZARR_PREFIX}{codec}: lossless frames use the bytes + blosc codecs")
        object.__setattr__(self, "codec", spec.name)
        object.__setattr__(self, "quality", spec.quality)

    @property
    def spec(self) -> ImageCodecSpec:
        return ImageCodecSpec(self.codec, self.quality)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ImageCodec":
        name = str(data.get("name", ""))
        if not name.startswith(ZARR_PREFIX):
            raise UserError(f"zarr codec {name!r}: expected {ZARR_PREFIX}<camera codec>")
        conf = data.get("configuration") or {}
        return cls(codec=name[len(ZARR_PREFIX):], quality=conf.get("quality", 0))

    def to_dict(self) -> dict[str, Any]:
        return {"name": f"{ZARR_PREFIX}{self.codec}", "configuration": {"quality": self.quality}}

    def validate(self, *, shape, dtype, chunk_grid) -> None:
        check_image_key(self.spec, "zarr array", shape, dtype.to_native_dtype())

    async def _decode_single(self, chunk_bytes: "Buffer", chunk_spec: "ArraySpec") -> "NDBuffer":
        frames = decode_chunk(self.spec, chunk_bytes.to_bytes(), chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(frames)

    async def _encode_single(self, chunk_array: "NDBuffer", chunk_spec: "ArraySpec") -> "Buffer | None":
        payload = encode_chunk(self.spec, chunk_array.as_numpy_array())
        return chunk_spec.prototype.buffer.from_bytes(payload)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: "ArraySpec") -> int:
        raise NotImplementedError(f"{ZARR_PREFIX}{self.codec}: variable-size codec")


for _name in LOSSY:
    register_codec(f"{ZARR_PREFIX}{_name}", ImageCodec)


def image_chunk_codecs(spec: ImageCodecSpec) -> dict[str, Any]:
    """create_array kwargs for the chunks (or sharding inner chunks) of a camera array stored
    with `spec`: {"serializer": ..., "compressors": [..., Crc32cCodec()]}."""
    spec = parse_image_codec(spec)
    if spec.lossless:
        return {"serializer": BytesCodec(),
                "compressors": [BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), Crc32cCodec()]}
    return {"serializer": ImageCodec(codec=spec.name, quality=spec.quality), "compressors": [Crc32cCodec()]}
