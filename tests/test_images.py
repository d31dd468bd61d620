"""load_image: every odd file a user may have becomes an upright RGB image or one clear ImageError."""

from __future__ import annotations

import pytest
from conftest import jpeg_bytes, noise_image
from PIL import Image

from selfiemask.images import ImageError, find_images, load_image


def test_png_with_alpha_is_flattened_on_white(tmp_path):
    img = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # fully transparent red
    img.paste((0, 0, 255, 255), (0, 0, 20, 30))  # opaque blue left half
    path = tmp_path / "a.png"
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (40, 30)
    assert out.getpixel((30, 10)) == (255, 255, 255)
    assert out.getpixel((5, 10)) == (0, 0, 255)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path)  # red in CMYK
    out = load_image(path)
    r, g, b = out.getpixel((16, 16))
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_exif_rotation_is_applied(tmp_path):
    img = noise_image((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90° clockwise to show
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes())
    assert Image.open(path).size == (80, 40)
    assert load_image(path).size == (40, 80)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file"),
        (b"this is a text file, not a photo\n", "not an image"),
        (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "not an image"),  # JPEG magic, garbage after
    ],
)
def test_bad_bytes_give_clear_errors(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason):
        load_image(path)
    with pytest.raises(ImageError, match=reason):
        load_image(content)


def corrupt_jpeg() -> bytes:
    """A JPEG whose header is intact and whose image data is overwritten with end-of-image markers."""
    data = jpeg_bytes(noise_image((100, 100)), quality=90)
    return data[:400] + b"\xff\xd9" * 50 + data[500:]


def test_corrupt_jpeg(tmp_path):
    with pytest.raises(ImageError, match="corrupt"):
        load_image(corrupt_jpeg())


def test_truncated_jpeg(tmp_path):
    data = jpeg_bytes(noise_image((200, 200)), quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(path)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    r, g, _ = load_image(path).getpixel((10, 10))
    assert r > 200 and g < 60


def test_huge_jpeg_is_downscaled_while_decoding(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (8000, 6000), (10, 120, 200)).save(path, quality=50)
    out = load_image(path, max_side=1600)
    assert max(out.size) == 1600


def test_huge_png_is_refused(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (9000, 9000)).save(path)  # 81 MP, beyond the limit, small on disk
    with pytest.raises(ImageError, match="too large"):
        load_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_find_images_recurses_and_keeps_named_files(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    noise_image().save(tmp_path / "a" / "b" / "x.jpg")
    (tmp_path / "a" / "notes.txt").write_text("hi")
    (tmp_path / "named.weird").write_text("hi")
    found = find_images([tmp_path / "a", tmp_path / "named.weird"])
    assert [p.name for p in found] == ["x.jpg", "named.weird"]
