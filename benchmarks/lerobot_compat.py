"""Make LeRobot's dataset code import and decode video beside the CPU-only torch (run inside .venv-lerobot).

Import this module before anything from `ledataset` (the `lerobot-dataset` package). What it changes, and why:

1. torchvision 0.28.0 (the release built for torch 2.13) ships compiled ops (`_C.so`) linked against
   libtorch_cuda / libc10_cuda, which the CPU wheel of torch 2.13.0 does not have, so they cannot load here.
   torchvision's own `import` then fails, because `_meta_registrations.py` registers fake kernels for
   `torchvision::nms` and `torchvision::qnms` unconditionally. We declare those two op schemas (no kernels)
   so the import succeeds; LeRobot's dataset code only uses torchvision's pure-Python parts (transforms and,
   below, the video reader), never nms.
2. LeRobot 0.4.4's decoders are torchcodec (its default when importable) and "pyav", which goes through
   `torchvision.io.VideoReader`. torchcodec's PyPI wheel links libtorch_cuda / libc10_cuda / libnvrtc, so it
   cannot load beside the CPU torch either (and it is not installed in .venv-lerobot). `VideoReader` was
   removed from open-source torchvision before 0.28, so LeRobot's pyav path would fail with an
   AttributeError. We supply `torchvision.io.VideoReader` as a small reader over PyAV with the behaviour
   LeRobot's pyav path relied on: `seek(t, keyframes_only=True)` seeks backward to the keyframe at or before
   `t`, iteration yields {"data": uint8 tensor (C, H, W) RGB, "pts": seconds}, `.container` is the PyAV
   container. Everything else in the decode (which frames to load, the timestamp tolerance check, the
   conversion to float in [0, 1]) is LeRobot's own `decode_video_frames_torchvision`.

`describe()` says exactly what is in use (versions, the decoder), for the benchmark JSON and test logs.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIB = None  # keeps the torch.library.Library alive (dropping it would remove the definitions)


def _declare_torchvision_ops() -> None:
    global _LIB
    if _LIB is not None:
        return
    try:
        torch.ops.torchvision.nms  # noqa: B018  (present when torchvision's compiled ops did load)
        return
    except (AttributeError, RuntimeError):
        pass
    _LIB = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _LIB.define(schema)


class PyAVVideoReader:
    """torchvision.io.VideoReader(path, "video"), pyav backend, as LeRobot's decode path uses it."""

    def __init__(self, src, stream: str = "video", num_threads: int = 0):
        import av

        if stream != "video":
            raise ValueError(f"only the video stream is supported, got {stream!r}")
        self.container = av.open(str(src), metadata_errors="ignore")
        self._stream = self.container.streams.video[0]
        if num_threads:
            self._stream.thread_count = num_threads
        self._frames = self.container.decode(self._stream)

    def seek(self, time_s: float, keyframes_only: bool = False) -> "PyAVVideoReader":
        # PyAV seeks to the keyframe at or before the target (backward=True); like torchvision's pyav
        # backend, there is no accurate seek: the caller decodes forward from there.
        offset = int(round(time_s / float(self._stream.time_base)))
        self.container.seek(offset, backward=True, any_frame=False, stream=self._stream)
        self._frames = self.container.decode(self._stream)
        return self

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        frame = next(self._frames)
        data = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
        return {"data": data, "pts": float(frame.pts * frame.time_base)}


def install() -> None:
    """Apply both changes (idempotent). Call before importing ledataset."""
    _declare_torchvision_ops()
    import torchvision
    import torchvision.io

    if not hasattr(torchvision.io, "VideoReader"):
        torchvision.io.VideoReader = PyAVVideoReader


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(video_backend: str) -> dict:
    """What ran on the LeRobot side."""
    import av

    return {
        "lerobot_dataset": _version("lerobot-dataset"),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "torchcodec_installed": importlib.util.find_spec("torchcodec") is not None,
        "av": av.__version__,
        "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "numpy": _version("numpy"),
        "pyarrow": _version("pyarrow"),
        "datasets": _version("datasets"),
        "video_backend": video_backend,
        "decoder": (
            f"LeRobot's '{video_backend}' path (decode_video_frames_torchvision) over "
            "torchvision.io.VideoReader supplied by benchmarks/lerobot_compat.py (PyAV; torchvision 0.28 has none); "
            "torchcodec not loadable beside CPU torch"
            if video_backend == "pyav"
            else video_backend
        ),
    }
