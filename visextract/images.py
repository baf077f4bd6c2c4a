"""Finding image files under paths, and loading one: bytes, sha256, decode, EXIF orientation.

Anything wrong with a file becomes an `ImageLoadError` whose message is a one-line reason ("empty file
(0 bytes)", "not an image file (it is an HTML page)", "truncated JPEG file ...", "image too large ...").
A bad file fails on its own; it never stops the batch.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import math
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import ExifTags, Image, UnidentifiedImageError

from visextract.errors import UsageError

try:  # HEIC/HEIF photos (iPhones) decode when the optional pillow-heif package is installed
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - depends on the environment
    HEIF_SUPPORTED = False
else:  # pragma: no cover
    register_heif_opener()
    HEIF_SUPPORTED = True

log = logging.getLogger("visextract")

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
    | {".avif", ".heic", ".heif"}  # HEIC without pillow-heif gets a failed record saying so, not silence
)
MAX_FILE_BYTES = 1 << 30  # larger files are refused before reading (120 Mpx of 16-bit RGBA is ~1 GB)
MIN_WORK_SIDE = 32  # tiny images are enlarged to this (MTCNN finds nothing below ~20 px and then fails)
MAX_WORK_ASPECT = 40  # thin strips are stretched to at most this aspect (OCR and MTCNN fail on thinner ones)


class ImageLoadError(Exception):
    """This file cannot be used as an image; the message is the one-line reason stored with it."""


# ---- finding files ------------------------------------------------------------------------------


def find_images(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Image files under `paths`, recursively, sorted per folder, each absolute path once.

    Files named explicitly are taken whatever their extension. Symlinked files are kept under their
    own path (a duplicate of the target is stored once, under both paths). Symlinked folders are
    followed after the real ones, and a folder is entered once, whatever the path to it: a symlink
    loop ends, and a file is not listed again through a symlinked folder.

    A generator whose memory grows with the number of folders (and of files named explicitly), never
    with the number of files found: millions of files stream through it.
    """
    seen_dirs: set[str] = set()  # real paths of the folders entered
    walked: set[str] = set()  # the folders entered, as listed: their image files were yielded
    named: set[Path] = set()  # files named explicitly
    for raw in paths:
        path = Path(os.path.abspath(os.path.expanduser(raw)))  # "a/../a/x.jpg" and "a/x.jpg" are one path
        if not path.exists() and not path.is_symlink():
            raise UsageError(f"no such file or folder: {raw}")
        if path.is_dir():
            yield from _walk(path, seen_dirs, walked, named)
        elif path not in named and not (str(path.parent) in walked and path.suffix.lower() in IMAGE_EXTENSIONS):
            named.add(path)
            yield path


def _walk(top: Path, seen_dirs: set[str], walked: set[str], named: set[Path]) -> Iterator[Path]:
    """Depth first, sorted; folders reached through a symlink wait until the real folders are done."""
    stack = [top]
    linked: list[Path] = []
    while stack or linked:
        folder = stack.pop() if stack else linked.pop(0)
        real = os.path.realpath(folder)
        if real in seen_dirs:
            continue
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list folder %s: %s", folder, exc.strerror or exc)
            continue
        walked.add(str(folder))
        subfolders = []
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                (linked if entry.is_symlink() else subfolders).append(path)
            elif path.suffix.lower() in IMAGE_EXTENSIONS and path not in named:
                yield path
        stack.extend(reversed(subfolders))


# ---- reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFile:
    """A file's bytes and content hash, read before any decoding."""

    path: Path
    data: bytes
    sha256: str

    @property
    def size_bytes(self) -> int:
        return len(self.data)


_FILE_KINDS = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def read_image_file(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> ImageFile:
    """Read and hash a regular file. Raises ImageLoadError with a one-line reason.

    Pipes and devices are refused without opening them for a blocking read, so they cannot hang a run.
    """
    try:
        info = os.stat(path)  # follows symlinks
        _check_regular(path, info, max_bytes)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as handle:
            _check_regular(path, os.fstat(handle.fileno()), max_bytes)  # it may have been swapped since
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageLoadError(f"broken symlink: its target {os.readlink(path)} does not exist") from None
        raise ImageLoadError("file not found: it was moved or deleted") from None
    except PermissionError:
        raise ImageLoadError("permission denied: the file cannot be read") from None
    except IsADirectoryError:
        raise ImageLoadError("is a folder, not a file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageLoadError("symlink loop: the link leads back to itself") from None
        raise ImageLoadError(f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise ImageLoadError("empty file (0 bytes)")
    if len(data) > max_bytes:
        raise ImageLoadError(f"file too large: over {max_bytes} bytes")
    return ImageFile(path=path, data=data, sha256=hashlib.sha256(data).hexdigest())


def _check_regular(path: Path, info: os.stat_result, max_bytes: int) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise ImageLoadError("is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "a special file")
        raise ImageLoadError(f"not a regular file: it is {kind}")
    if info.st_size > max_bytes:
        raise ImageLoadError(f"file too large: {info.st_size} bytes is over the limit of {max_bytes}")


# ---- decoding -----------------------------------------------------------------------------------------


@dataclass
class LoadedImage:
    """A decoded image, upright (EXIF orientation applied), in RGB.

    `rgb` is the working copy the tools see: its longest side is at most `max_side`, and tiny or very
    thin images are enlarged (see `MIN_WORK_SIDE`). `width` and `height` are always the original upright
    size. `scale_x` / `scale_y` map working pixel coordinates back to original ones
    (`original_x = working_x * scale_x`); `scale` is the factor along the longest side, and never 1 when
    the working copy differs in size from the original.
    """

    file: ImageFile
    format: str
    width: int
    height: int
    rgb: Image.Image
    scale: float
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def sha256(self) -> str:
        return self.file.sha256

    @property
    def scale_x(self) -> float:
        return self.width / self.rgb.width

    @property
    def scale_y(self) -> float:
        return self.height / self.rgb.height


_EXIF_KEEP = {"DateTimeOriginal", "DateTime", "Make", "Model", "Software", "LensModel"}
# EXIF orientation -> the transpose that makes the image upright
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_OPEN_LOCK = threading.Lock()


def decode_image(file: ImageFile, *, max_side: int, max_pixels: int) -> LoadedImage:
    """Decode, orient and convert an image file. Raises ImageLoadError with a one-line reason.

    Only the first frame of an animation or multi-page file is used. Images over `max_pixels` are refused
    from their header, before any pixel is decoded (decompression bombs).
    """
    fmt, width, height = _signature_kind(file.data) or "image", 0, 0  # for messages if opening fails
    try:
        image = _open(file.data, max_pixels)
        fmt = image.format or fmt
        width, height = image.size
        if width < 1 or height < 1:
            raise ImageLoadError(f"image has no pixels ({width}x{height})")
        if width * height > max_pixels:
            raise ImageLoadError(_too_large(width, height, max_pixels))
        metadata = _exif_metadata(image)
        orientation = _orientation(image)
        if fmt in ("JPEG", "MPO") and max(width, height) > 2 * max_side:
            shrink = max_side / max(width, height)  # let libjpeg decode at 1/2, 1/4 or 1/8 size: fast, less memory
            image.draft(None, (math.ceil(width * shrink), math.ceil(height * shrink)))
        rgb = _to_rgb(image)
        if max(rgb.size) > max_side:
            rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        if orientation in _UPRIGHT:
            rgb = rgb.transpose(_UPRIGHT[orientation])
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(_unidentified_reason(file)) from None
    except Image.DecompressionBombError as exc:  # a frame or tile bigger than the header said
        raise ImageLoadError(f"image too large (possible decompression bomb): {_first_line(exc)}") from None
    except MemoryError:
        raise ImageLoadError(f"not enough memory to decode this {width}x{height} image") from None
    except Exception as exc:  # untrusted bytes: any decoder error fails this file alone
        raise ImageLoadError(_decode_reason(exc, fmt, file.data)) from None
    if orientation in (5, 6, 7, 8):  # the upright size in original pixels
        width, height = height, width
    rgb = _usable_size(rgb, max_side)
    return LoadedImage(
        file=file,
        format=fmt,
        width=width,
        height=height,
        rgb=rgb,
        scale=_scale(width, height, rgb),
        metadata=metadata,
    )


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Image.open reads the header only; the size is checked by the caller, with a clearer message than PIL's.

    PIL's own check is global state, and warnings.catch_warnings is not thread-safe, so the check is
    switched off under a lock while opening, then set to `max_pixels` for PIL's later checks (TIFF tiles,
    GIF frames), which then never fire for an image visextract accepted.
    """
    with _OPEN_LOCK:
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = max_pixels


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 when missing or unreadable: broken EXIF must not fail a good image."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for every mode: 16-bit and float scaled to 8 bits, transparency composited on white, CMYK converted."""
    if image.mode.startswith(("I", "F")):
        image = _to_8bit(image)
    if "transparency" in image.info and image.mode in ("1", "L", "P", "RGB"):
        image = image.convert("RGBA")  # palette, grey or colour-key transparency
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.load()
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float greyscale as 8-bit "L", without clipping (PIL's convert clips at 255).

    16-bit data is full range (PNG and TIFF scale lower bit depths up to 0-65535), so it is divided by 257.
    32-bit integers within 0-255 or 0-65535 are taken as 8- or 16-bit; floats within 0-1 as fractions;
    anything else is stretched from its minimum to its maximum.
    """
    import numpy as np

    array = np.asarray(image)
    if array.dtype.kind == "u" and array.dtype.itemsize == 2:  # I;16, I;16B, I;16L
        return Image.fromarray(((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8), "L")
    values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if array.dtype.kind == "f" and low >= 0 and high <= 1:
        low, high = 0.0, 1.0
    elif low >= 0 and high <= 255:
        low, high = 0.0, 255.0
    elif low >= 0 and high <= 65535:
        low, high = 0.0, 65535.0
    span = (high - low) or 1.0
    scaled = np.clip(np.rint((values - low) * (255.0 / span)), 0, 255)
    return Image.fromarray(scaled.astype(np.uint8), "L")


def _usable_size(rgb: Image.Image, max_side: int) -> Image.Image:
    """Enlarge tiny images (and stretch thin strips) so that every tool can run on them.

    A 1x1 or 3x2 px image is enlarged evenly (nearest neighbour, so its colours stay exact) to at least
    MIN_WORK_SIDE; a strip thinner than 1:MAX_WORK_ASPECT is then stretched across. Only the working copy
    changes: the recorded width and height stay the original ones, and boxes map back per axis.
    """
    width, height = rgb.size
    short, long = min(width, height), max(width, height)
    if short >= MIN_WORK_SIDE and long <= MAX_WORK_ASPECT * short:
        return rgb
    factor = max(1.0, min(MIN_WORK_SIDE / short, max(max_side, long) / long))
    new_w, new_h = width * factor, height * factor
    min_short = max(MIN_WORK_SIDE, max(new_w, new_h) / MAX_WORK_ASPECT)
    if new_w < new_h:
        new_w = max(new_w, min_short)
    else:
        new_h = max(new_h, min_short)
    return rgb.resize((math.ceil(new_w), math.ceil(new_h)), Image.Resampling.NEAREST)


def _scale(width: int, height: int, rgb: Image.Image) -> float:
    """Original / working size along the longest side; along the other side when only that one changed."""
    along_long = max(width, height) / max(rgb.size)
    if along_long == 1 and rgb.size != (width, height):  # a thin strip stretched across only
        return min(width, height) / min(rgb.size)
    return along_long


def _exif_metadata(image: Image.Image) -> dict[str, str]:
    try:
        exif = image.getexif()
        tags = {**exif, **exif.get_ifd(ExifTags.IFD.Exif)}
    except Exception:  # broken EXIF must not fail an otherwise good image
        return {}
    out = {}
    for tag, value in tags.items():
        name = ExifTags.TAGS.get(tag)
        if name in _EXIF_KEEP and isinstance(value, str | int | float):
            out[name] = " ".join(str(value).strip("\x00 ").split())[:200]
    return out


# ---- reasons --------------------------------------------------------------------------------------------

_IMAGE_SIGNATURES = (
    (0, b"\xff\xd8\xff", "JPEG"),
    (0, b"\x89PNG\r\n\x1a\n", "PNG"),
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (8, b"WEBP", "WebP"),
    (0, b"BM", "BMP"),
)
_BMP_HEADERS = (12, 40, 52, 56, 64, 108, 124)
_OTHER_SIGNATURES = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or Office document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "a program (ELF)"),
    (b"ID3", "an MP3 audio file"),
    (b"SQLite format 3", "an SQLite database"),
)
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")


def _unidentified_reason(file: ImageFile) -> str:
    """Why PIL could not identify a file: a damaged image, a known non-image, or unknown bytes."""
    data = file.data
    head = data[:512].lstrip().lower()
    if data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _HEIF_BRANDS and HEIF_SUPPORTED:
            return "damaged HEIC/HEIF file: its image header cannot be read"
        if brand in _HEIF_BRANDS:
            return "unsupported image format: HEIC/HEIF (install the pillow-heif package to read it)"
        if brand in (b"avif", b"avis"):
            return "damaged AVIF file: its header cannot be read"
        return "not an image file (it is a video or other ISO media file)"
    kind = _signature_kind(data)
    if kind is not None:
        return f"damaged {kind} file: its image header cannot be read (corrupt or truncated)"
    for signature, what in _OTHER_SIGNATURES:
        if data.startswith(signature):
            return f"not an image file (it is {what})"
    if head.startswith((b"<!doctype html", b"<html")):
        return "not an image file (it is an HTML page)"
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "not an image file (it is an SVG vector drawing, which is not supported)"
    if _looks_like_text(data[:4096]):
        return "not an image file (it is text)"
    return "not an image file (unrecognised format)"


def _signature_kind(data: bytes) -> str | None:
    """The image format the first bytes announce (JPEG, PNG...), if any."""
    for offset, signature, kind in _IMAGE_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            if kind == "BMP" and not (len(data) >= 18 and int.from_bytes(data[14:18], "little") in _BMP_HEADERS):
                continue
            return kind
    return None


def _looks_like_text(sample: bytes) -> bool:
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = sample[:-3].decode("utf-8")  # the sample may end inside a character
        except UnicodeDecodeError:
            return False
    return bool(text) and sum(c.isprintable() or c in "\r\n\t" for c in text) >= 0.95 * len(text)


def _decode_reason(exc: BaseException, fmt: str, data: bytes) -> str:
    text = _first_line(exc)
    if "truncated" in text.lower() or isinstance(exc, EOFError) or _shorter_than_declared(data):
        return f"truncated {fmt} file: the image data ends early"
    return f"cannot decode {fmt} image: {text}"


def _shorter_than_declared(data: bytes) -> bool:
    """Whether a RIFF file (WebP) is shorter than its header says; libwebp only says it cannot decode it."""
    return data[:4] == b"RIFF" and int.from_bytes(data[4:8], "little") + 8 > len(data)


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return (
        f"image too large: {width}x{height} is {width * height / 1e6:.1f} Mpx, over the limit of "
        f"{max_pixels / 1e6:g} Mpx (possible decompression bomb); raise VISEXTRACT_MAX_IMAGE_PIXELS if it is genuine"
    )


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, with its type unless it is one of PIL's usual ones."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    if isinstance(exc, OSError | SyntaxError | ValueError) and line:
        return line[:300]
    return f"{type(exc).__name__}: {line}".rstrip(": ")[:300]
