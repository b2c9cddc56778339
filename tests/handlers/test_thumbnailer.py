"""handlers/thumbnailer.py: sizes, crops, animation, refusals (pure, no server)."""

from __future__ import annotations

import io

from PIL import Image
from twisted.trial import unittest

from conduit_tw.handlers import thumbnailer
from conduit_tw.handlers.media import choose_variant


def _image(width: int, height: int, mode: str = "RGB", fmt: str = "PNG") -> io.BytesIO:
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, fmt)
    buf.seek(0)
    return buf


class SizeTests(unittest.TestCase):
    def test_target_size(self) -> None:
        self.assertEqual(thumbnailer.target_size(1600, 1200, 320, 240, "scale"), (320, 240))
        self.assertEqual(thumbnailer.target_size(1000, 250, 320, 240, "scale"), (320, 80))
        self.assertEqual(thumbnailer.target_size(1000, 250, 96, 96, "crop"), (384, 96))
        # Never upscaled.
        self.assertEqual(thumbnailer.target_size(20, 10, 320, 240, "scale"), (20, 10))
        self.assertEqual(thumbnailer.target_size(20, 10, 96, 96, "crop"), (20, 10))
        self.assertEqual(thumbnailer.target_size(10000, 1, 32, 32, "scale"), (32, 1))

    def test_crop_box(self) -> None:
        self.assertEqual(thumbnailer.crop_box(384, 96, 96, 96), (144, 0, 240, 96))
        self.assertEqual(thumbnailer.crop_box(96, 384, 96, 96), (0, 144, 96, 240))
        self.assertEqual(thumbnailer.crop_box(20, 10, 96, 96), (5, 0, 15, 10))

    def test_choose_variant(self) -> None:
        self.assertEqual(choose_variant(24, 24, "crop", False), ("32x32-crop", 32, 32, "crop"))
        self.assertEqual(choose_variant(33, 20, "crop", False), ("96x96-crop", 96, 96, "crop"))
        self.assertEqual(choose_variant(100, 100, "scale", True)[0], "320x240-scale-animated")
        self.assertEqual(choose_variant(700, 500, "scale", False)[0], "800x600-scale")
        self.assertEqual(choose_variant(801, 10, "scale", False)[0], "full")
        self.assertEqual(choose_variant(100, 100, "crop", False)[0], "full")


class ThumbnailTests(unittest.TestCase):
    def test_each_method(self) -> None:
        for (w, h, method), size in {
            (32, 32, "crop"): (32, 32), (96, 96, "crop"): (96, 96),
            (320, 240, "scale"): (320, 180), (640, 480, "scale"): (640, 360),
            (800, 600, "scale"): (800, 450),
        }.items():
            t = thumbnailer.thumbnail(_image(1920, 1080), w, h, method, False)
            self.assertEqual((t.width, t.height), size)
            self.assertEqual(Image.open(io.BytesIO(t.data)).size, size)
            self.assertEqual(t.content_type, "image/png")

    def test_jpeg_and_alpha(self) -> None:
        t = thumbnailer.thumbnail(_image(500, 500, fmt="JPEG"), 96, 96, "crop", False)
        self.assertEqual(t.content_type, "image/jpeg")
        t = thumbnailer.thumbnail(_image(500, 500, mode="RGBA", fmt="WEBP"), 96, 96, "crop", False)
        self.assertEqual(t.content_type, "image/png")
        self.assertEqual(Image.open(io.BytesIO(t.data)).mode, "RGBA")

    def test_animated_webp(self) -> None:
        frames = [Image.new("RGB", (300, 200), (i * 60, 0, 0)) for i in range(3)]
        buf = io.BytesIO()
        frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=50)
        buf.seek(0)
        t = thumbnailer.thumbnail(buf, 96, 96, "crop", True)
        out = Image.open(io.BytesIO(t.data))
        self.assertEqual((out.size, out.n_frames), ((96, 96), 3))

    def test_garbage(self) -> None:
        for data in (b"", b"hello", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, b"GIF89a\x10\x00"):
            self.assertRaises(
                thumbnailer.CannotThumbnail, thumbnailer.thumbnail, io.BytesIO(data), 32, 32, "crop", False
            )

    def test_bomb(self) -> None:
        """Over our limit, and over Pillow's own (DecompressionBombError)."""
        self.assertRaises(
            thumbnailer.TooLarge, thumbnailer.thumbnail, _image(8000, 5000, mode="1"), 32, 32, "crop", False
        )
        self.patch(thumbnailer, "MAX_PIXELS", 10**12)
        self.patch(Image, "MAX_IMAGE_PIXELS", 1000)
        self.assertRaises(
            thumbnailer.TooLarge, thumbnailer.thumbnail, _image(40, 30), 32, 32, "crop", False
        )
        self.assertRaises(
            thumbnailer.TooLarge, thumbnailer.thumbnail, _image(60, 60), 32, 32, "crop", False
        )
