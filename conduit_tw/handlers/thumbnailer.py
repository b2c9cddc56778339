"""
Thumbnails with Pillow (client-server-api "Thumbnails").

Pure CPU work on bytes and files, meant to run in a thread
(L{conduit_tw.handlers.media} calls it through C{deferToThread}). Pillow is
imported on first use, so a server that never thumbnails does not load it.

- C{scale}: the image scaled down, aspect kept, so that it fits the box
  and touches at least one side (never upscaled).
- C{crop}: the image scaled down so that it covers the box, then centre
  cropped to the box's aspect ratio (never upscaled: a smaller image is
  cropped to the aspect ratio at its own size).
- Animated GIF/WebP with C{animated=true}: every frame is resized and the
  result is an animated WebP (the spec's preference), or a GIF when this
  Pillow has no WebP support. Otherwise the first frame.
- Decompression bombs: images of more than L{MAX_PIXELS} pixels (from the
  header, before anything is decoded) and Pillow's own
  C{DecompressionBombError}/C{Warning} are refused with L{TooLarge}.
- Anything Pillow cannot decode raises L{CannotThumbnail}.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any, BinaryIO

#: Images larger than this (width x height) are not thumbnailed (about
#: 128 MB of RGBA once decoded; Pillow's own limit is 89 M).
MAX_PIXELS = 32_000_000
#: Animated thumbnails keep at most this many frames (else: first frame).
MAX_FRAMES = 200

#: The spec's recommended sizes (client-server-api "Thumbnails").
PRESETS: tuple[tuple[int, int, str], ...] = (
    (32, 32, "crop"),
    (96, 96, "crop"),
    (320, 240, "scale"),
    (640, 480, "scale"),
    (800, 600, "scale"),
)

#: Content types Pillow is asked to decode.
THUMBNAILABLE = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff",
     "image/apng", "image/x-icon", "image/vnd.microsoft.icon"}
)


class CannotThumbnail(Exception):
    """The content is no image Pillow can decode."""


class TooLarge(Exception):
    """The image has too many pixels (a decompression bomb, or just huge)."""


@dataclass(frozen=True)
class Thumbnail:
    """A generated thumbnail."""

    data: bytes
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: size, format and whether it is animated."""

    width: int
    height: int
    animated: bool
    #: The MIME type of the decoded format, when Pillow knows one.
    content_type: str | None = None


_pil: Any = None


def _image() -> Any:
    """The PIL.Image module, imported once (and bombs made errors)."""
    global _pil
    if _pil is None:
        from PIL import Image

        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
        _pil = Image
    return _pil


def _open(source: BinaryIO) -> Any:
    Image = _image()
    try:
        im = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLarge(str(e)) from None
    except Exception as e:
        raise CannotThumbnail(f"{type(e).__name__}: {e}") from None
    if im.width <= 0 or im.height <= 0:
        raise CannotThumbnail("empty image")
    pixels = im.width * im.height
    # Pillow's warning threshold is checked here too: the warning filter
    # that makes it an error is process-wide and can be reset by others.
    if pixels > MAX_PIXELS or (Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS):
        raise TooLarge(f"{im.width}x{im.height} pixels")
    return im


def inspect(source: BinaryIO) -> ImageInfo:
    """The size and animation of an image, from its header only."""
    im = _open(source)
    return ImageInfo(
        im.width, im.height, bool(getattr(im, "is_animated", False)),
        _image().MIME.get(im.format or ""),
    )


def target_size(width: int, height: int, box_w: int, box_h: int, method: str) -> tuple[int, int]:
    """
    The size of the thumbnail of a C{width} x C{height} image for the box
    (before cropping for C{crop}: that size covers the box). Never larger
    than the original.
    """
    if method == "crop":
        ratio = max(box_w / width, box_h / height)
    else:
        ratio = min(box_w / width, box_h / height)
    ratio = min(ratio, 1.0)
    return max(1, round(width * ratio)), max(1, round(height * ratio))


def crop_box(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int, int, int]:
    """The centred region of a C{width} x C{height} image with C{box_w:box_h} aspect."""
    target_aspect = box_w / box_h
    if width / height > target_aspect:
        new_w = max(1, min(width, round(height * target_aspect)))
        left = (width - new_w) // 2
        return left, 0, left + new_w, height
    new_h = max(1, min(height, round(width / target_aspect)))
    top = (height - new_h) // 2
    return 0, top, width, top + new_h


def _resize(frame: Any, box_w: int, box_h: int, method: str) -> Any:
    Image = _image()
    w, h = target_size(frame.width, frame.height, box_w, box_h, method)
    out = frame.resize((w, h), Image.Resampling.LANCZOS) if (w, h) != frame.size else frame
    if method == "crop":
        out = out.crop(crop_box(out.width, out.height, box_w, box_h))
    return out


def _has_alpha(im: Any) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def thumbnail(source: BinaryIO, box_w: int, box_h: int, method: str, animated: bool) -> Thumbnail:
    """
    Make a thumbnail of the image in C{source} for a C{box_w} x C{box_h}
    box; see the module docstring.

    @raise CannotThumbnail: not a decodable image.
    @raise TooLarge: more than L{MAX_PIXELS} pixels.
    """
    im = _open(source)
    Image = _image()
    try:
        if animated and getattr(im, "is_animated", False) and im.n_frames <= MAX_FRAMES:
            return _animated(im, box_w, box_h, method)
        if hasattr(im, "draft") and im.format == "JPEG":
            # Let libjpeg decode at a reduced scale: much less memory and CPU.
            w, h = target_size(im.width, im.height, box_w, box_h, method)
            im.draft("RGB", (w, h))
        im.seek(0)
        im.load()
        alpha = _has_alpha(im)
        frame = im.convert("RGBA" if alpha else "RGB")
        out = _resize(frame, box_w, box_h, method)
        buf = io.BytesIO()
        if alpha or im.format in ("PNG", "GIF"):
            out.save(buf, "PNG", optimize=False)
            content_type = "image/png"
        else:
            out.save(buf, "JPEG", quality=80)
            content_type = "image/jpeg"
        return Thumbnail(buf.getvalue(), content_type, out.width, out.height)
    except (TooLarge, CannotThumbnail):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLarge(str(e)) from None
    except Exception as e:
        # Truncated or corrupt data shows only while decoding.
        raise CannotThumbnail(f"{type(e).__name__}: {e}") from None


def _animated(im: Any, box_w: int, box_h: int, method: str) -> Thumbnail:
    from PIL import ImageSequence, features

    frames = []
    durations = []
    for frame in ImageSequence.Iterator(im):
        durations.append(frame.info.get("duration", 100))
        frames.append(_resize(frame.convert("RGBA"), box_w, box_h, method))
    buf = io.BytesIO()
    loop = im.info.get("loop", 0)
    if features.check("webp"):
        frames[0].save(
            buf, "WEBP", save_all=True, append_images=frames[1:], duration=durations,
            loop=loop, quality=80,
        )
        content_type = "image/webp"
    else:
        frames[0].save(
            buf, "GIF", save_all=True, append_images=frames[1:], duration=durations,
            loop=loop, disposal=2,
        )
        content_type = "image/gif"
    return Thumbnail(buf.getvalue(), content_type, frames[0].width, frames[0].height)
