"""Datasets, JSONL and image import: round trips and the awkward inputs real folders hold."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from img2prog.data import io as dio
from img2prog.data.io import DataError
from img2prog.lang import ProgramError
from img2prog.lang.csg2d import render

PROGRAMS = ["(Circle 3 8 8)", "(+ (Quad 8 10 2 8 0) (Quad 8 3 2 2 0))", ""]


def images_of(ds) -> list[np.ndarray]:
    return [np.asarray(im) for im in ds["image"]]


# --------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------


def test_programs_to_dataset_columns_and_pixels():
    ds = dio.programs_to_dataset(PROGRAMS, size=64, extra_columns={"id": ["a", "b", "c"]})
    assert ds.column_names == ["program", "image", "id"]
    assert ds["program"] == PROGRAMS and ds["id"] == ["a", "b", "c"]
    for arr, prog in zip(images_of(ds), PROGRAMS):
        assert ds[0]["image"].mode == "RGB"
        assert arr.shape == (64, 64, 3)
        np.testing.assert_array_equal(arr, render(prog, 64))


def test_renderings_are_stored_as_1_bit_png():
    import io

    from datasets import Image as ImageFeature

    ds = dio.programs_to_dataset(PROGRAMS[:1], size=32)
    cell = ds.cast_column("image", ImageFeature(decode=False))[0]["image"]
    assert Image.open(io.BytesIO(cell["bytes"])).mode == "1"
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (10, 20, 30)
    for arr in (colour, colour[:, :, 0] + 7):  # colour and grey that is not black/white
        back = np.asarray(Image.open(io.BytesIO(dio.encode_png(arr))))
        np.testing.assert_array_equal(back, arr)


def test_programs_to_dataset_in_processes_matches():
    progs = [f"(Circle {r} 8 8)" for r in range(1, 9)] * 70  # 560 programs: several chunks
    ds = dio.programs_to_dataset(progs, size=8, workers=2)
    assert ds["program"] == progs
    np.testing.assert_array_equal(np.asarray(ds[559]["image"]), render(progs[559], 8))


def test_programs_to_dataset_errors():
    with pytest.raises(ProgramError, match=r"program 1 \(and 1 more\)") as e:
        dio.programs_to_dataset(["(Circle 3 8 8)", "(Circle 3", "(Quad"], size=16)
    assert e.value.offset is not None
    with pytest.raises(ValueError, match="'id' has 1 values for 2 programs"):
        dio.programs_to_dataset(["", ""], size=16, extra_columns={"id": [1]})
    with pytest.raises(ValueError, match="clashes"):
        dio.programs_to_dataset([""], size=16, extra_columns={"image": [1]})


def test_save_load_round_trip(tmp_path):
    ds = dio.programs_to_dataset(PROGRAMS, size=32, extra_columns={"id": [1, 2, 3]})
    path = dio.save_dataset(ds, tmp_path / "sub" / "ds")
    back = dio.load_dataset_dir(path)
    assert back.column_names == ds.column_names
    assert back["program"] == PROGRAMS and back["id"] == [1, 2, 3]
    for a, b in zip(images_of(back), images_of(ds)):
        np.testing.assert_array_equal(a, b)
    assert dio.load_programs(path) == PROGRAMS
    # Saving again over a dataset folder is allowed.
    dio.save_dataset(ds.select(range(1)), path)
    assert len(dio.load_dataset_dir(path)) == 1


def test_load_dataset_dir_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        dio.load_dataset_dir(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("hi")
    with pytest.raises(DataError, match="not a saved dataset"):
        dio.load_dataset_dir(tmp_path / "plain")
    with pytest.raises(DataError, match="not a folder"):
        dio.load_dataset_dir(tmp_path / "plain" / "a.txt")
    with pytest.raises(DataError, match="refusing"):
        dio.save_dataset(dio.programs_to_dataset([""], size=8), tmp_path / "plain")


# --------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------


def test_jsonl_round_trip_and_blank_lines(tmp_path):
    rows = [
        {"program": "(Circle 3 8 8)", "score": np.float32(0.5), "n": np.int64(3), "v": np.arange(2)},
        {"x": None},
    ]
    path = dio.write_jsonl(rows, tmp_path / "deep" / "rows.jsonl")
    assert dio.read_jsonl(path) == [
        {"program": "(Circle 3 8 8)", "score": 0.5, "n": 3, "v": [0, 1]},
        {"x": None},
    ]
    path.write_text(path.read_text() + "\n   \n")
    assert len(dio.read_jsonl(path)) == 2
    assert list(tmp_path.joinpath("deep").iterdir()) == [path]  # no temporary left behind


def test_read_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"program": ""}\n\n{"program": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: not valid JSON"):
        dio.read_jsonl(p)
    p.write_text('{"program": ""}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: expected a JSON object, got list"):
        dio.read_jsonl(p)
    p.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not UTF-8"):
        dio.read_jsonl(p)
    with pytest.raises(DataError, match="no such file"):
        dio.read_jsonl(tmp_path / "missing.jsonl")
    p.write_bytes(b'\xef\xbb\xbf{"a": 1}\n')  # a byte-order mark is tolerated
    assert dio.read_jsonl(p) == [{"a": 1}]


def test_import_export_jsonl(tmp_path):
    src = tmp_path / "progs.jsonl"
    dio.write_jsonl(
        [{"id": "x1", "program": PROGRAMS[0], "tag": "a"}, {"id": "x2", "program": PROGRAMS[1]}], src
    )
    ds = dio.import_jsonl(src, size=32)
    assert ds.column_names == ["program", "image", "id", "tag"]
    assert ds["id"] == ["x1", "x2"] and ds["tag"] == ["a", None]
    np.testing.assert_array_equal(np.asarray(ds[1]["image"]), render(PROGRAMS[1], 32))
    out = dio.export_jsonl(ds, tmp_path / "out.jsonl")
    assert dio.read_jsonl(out) == [
        {"program": PROGRAMS[0], "id": "x1", "tag": "a"},
        {"program": PROGRAMS[1], "id": "x2", "tag": None},
    ]
    again = dio.import_jsonl(out, size=32)
    assert again["program"] == ds["program"] and again["id"] == ds["id"]
    assert dio.load_programs(out) == PROGRAMS[:2]


def test_import_jsonl_errors(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text('{"program": "(Circle 3 8 8)"}\n\n{"program": "(Circle 3 8"}\n')
    with pytest.raises(ProgramError, match=r"p\.jsonl:3: ") as e:
        dio.import_jsonl(p, size=16)
    assert e.value.offset == len("(Circle 3 8")
    p.write_text('{"program": "(Circle 3 8 8)"}\n{"id": 4}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:2: missing 'program'"):
        dio.import_jsonl(p, size=16)
    with pytest.raises(DataError, match=r"p\.jsonl:2: missing 'program'"):
        dio.load_programs(p)
    p.write_text('{"program": "", "image": "a.png"}\n')
    with pytest.raises(DataError, match="reserved"):
        dio.import_jsonl(p, size=16)


def test_export_refuses_rows_without_programs(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("L", (8, 8), 0).save(folder / "a.png")
    ds, _ = dio.import_image_folder(folder, size=8)
    with pytest.raises(DataError, match="save_dataset"):
        dio.export_jsonl(ds, tmp_path / "x.jsonl")


# --------------------------------------------------------------------------------------
# normalize_image
# --------------------------------------------------------------------------------------


def grey(arr: np.ndarray) -> np.ndarray:
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
    assert set(np.unique(arr)) <= {0, 255}
    return arr[..., 0]


def test_normalize_threshold_and_luminance():
    img = np.array([[127, 128], [0, 255]], np.uint8)
    np.testing.assert_array_equal(grey(dio.normalize_image(img, 2)), [[0, 255], [0, 255]])
    np.testing.assert_array_equal(grey(dio.normalize_image(img, 2, threshold=200)), [[0, 0], [0, 255]])
    # Pure green is bright (luma 150), pure blue dark (29), pure red in between (76).
    colours = np.array([[[0, 255, 0], [0, 0, 255], [255, 0, 0]]], np.uint8)
    padded = grey(dio.normalize_image(colours, 3))
    np.testing.assert_array_equal(padded[1], [255, 0, 0])


def test_normalize_rendering_is_identity():
    arr = render("(+ (- (Circle 5 7 5) (Circle 5 7 6)) (Quad 7 6 2 2 45) (Circle 2 4 10) (Circle 2 10 10))")
    np.testing.assert_array_equal(dio.normalize_image(arr), arr)
    np.testing.assert_array_equal(dio.normalize_image(Image.fromarray(arr)), arr)


def test_normalize_alpha_composites_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # black everywhere ...
    rgba[:2, :, 3] = 255  # ... opaque in the top half, transparent below
    out = grey(dio.normalize_image(Image.fromarray(rgba, "RGBA"), 4))
    np.testing.assert_array_equal(out[:2], 0)
    np.testing.assert_array_equal(out[2:], 255)
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    np.testing.assert_array_equal(grey(dio.normalize_image(la, 4)), out)


def test_normalize_palette_with_transparency():
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 255, 255])
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0  # index 0 (black) is transparent
    out = grey(dio.normalize_image(p, 4))
    assert (out == 255).all()  # transparent black → white; index 1 is white anyway
    del p.info["transparency"]
    out = grey(dio.normalize_image(p, 4))
    assert out[0, 0] == 255 and (out.ravel()[1:] == 0).all()


def test_normalize_16_bit_and_other_modes():
    a16 = np.array([[30000, 40000], [0, 65535]], np.uint16)  # 30000/257 ≈ 116.7 → black
    expected = [[0, 255], [0, 255]]
    np.testing.assert_array_equal(grey(dio.normalize_image(a16, 2)), expected)
    np.testing.assert_array_equal(grey(dio.normalize_image(Image.fromarray(a16), 2)), expected)
    np.testing.assert_array_equal(
        grey(dio.normalize_image(Image.fromarray(a16.astype(np.int32)), 2)), expected
    )
    floats = np.array([[0.4, 0.6], [0.0, 1.0]])
    np.testing.assert_array_equal(grey(dio.normalize_image(floats, 2)), expected)
    mask = np.array([[True, False], [True, False]])  # True = black
    np.testing.assert_array_equal(grey(dio.normalize_image(mask, 2)), expected)
    base = Image.fromarray(np.array([[0, 255], [0, 255]], np.uint8))
    for mode in ("1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"):
        im = base.convert(mode) if mode not in ("LAB", "HSV") else base.convert("RGB").convert(mode)
        np.testing.assert_array_equal(grey(dio.normalize_image(im, 2)), expected, err_msg=mode)


def test_normalize_exif_orientation():
    arr = np.full((4, 8), 255, np.uint8)
    arr[:, :2] = 0  # black band on the left of a landscape picture
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    im.info["exif"] = exif.tobytes()
    im.getexif()[0x0112] = 6
    out = grey(dio.normalize_image(im, 8))
    # Upright, the picture is portrait (padded left and right) with the band on top.
    assert (out[:2, 2:6] == 0).all() and (out[2:] == 255).all()
    assert (out[:, :2] == 255).all() and (out[:, 6:] == 255).all()


def test_normalize_pads_to_square_centred():
    tiny = np.zeros((3, 5), np.uint8)  # 3 rows × 5 columns, all black
    out = grey(dio.normalize_image(tiny, 256))
    assert out.shape == (256, 256)
    rows_black = (out == 0).all(axis=1)
    # 5×5 square with a white row above and below; each input row becomes 256/5 ≈ 51 rows.
    assert not rows_black[:50].any() and rows_black[52:204].all() and not rows_black[206:].any()
    assert (out[:, 0][rows_black] == 0).all()  # black reaches both side edges


def test_normalize_box_filter_keeps_thin_strokes():
    big = np.full((512, 512), 255, np.uint8)
    big[:, 101] = 0  # a 1-pixel line: covers half of an output pixel column
    big[300, :] = 0
    out = grey(dio.normalize_image(big, 256))
    assert (out[:, 50] == 0).all() and (out[150, :] == 0).all()
    assert (out == 0).sum() == 256 + 256 - 1


def test_normalize_rejects_bad_input():
    with pytest.raises(TypeError):
        dio.normalize_image("picture.png")
    with pytest.raises(ValueError, match="shape"):
        dio.normalize_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="no pixels"):
        dio.normalize_image(np.zeros((0, 4), np.uint8))


# --------------------------------------------------------------------------------------
# Image folders and target resolution
# --------------------------------------------------------------------------------------


def write_odd_images(folder):
    folder.mkdir()
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[5:15, 5:15, 3] = 255  # an opaque black square on transparency
    Image.fromarray(rgba, "RGBA").save(folder / "b_rgba.png")
    pal = Image.new("P", (10, 10), 1)
    pal.putpalette([0, 0, 0, 255, 255, 255])
    pal.save(folder / "c_palette.gif")
    Image.fromarray(np.full((6, 6), 1000, np.uint16)).save(folder / "d_16bit.png")  # dark
    Image.fromarray(np.zeros((3, 5), np.uint8)).save(folder / "e_tiny.bmp")
    big = np.full((1800, 2400, 3), 255, np.uint8)
    big[600:1200, 900:1500] = 0
    Image.fromarray(big).save(folder / "f_huge.jpg", quality=90)
    good = (folder / "b_rgba.png").read_bytes()
    (folder / "g_corrupt.png").write_bytes(good[: len(good) // 2])  # truncated
    (folder / "h_fake.png").write_text("not a picture")
    (folder / "notes.txt").write_text("hello")
    (folder / "A_upper.PNG").write_bytes(good)  # extensions are case-insensitive
    (folder / "sub").mkdir()


def test_import_image_folder(tmp_path):
    write_odd_images(tmp_path / "imgs")
    ds, skipped = dio.import_image_folder(tmp_path / "imgs", size=32)
    assert ds.column_names == ["program", "image", "source"]
    assert ds["source"] == [
        "A_upper.PNG",
        "b_rgba.png",
        "c_palette.gif",
        "d_16bit.png",
        "e_tiny.bmp",
        "f_huge.jpg",
    ]
    assert ds["program"] == [None] * 6
    imgs = {s: grey(np.asarray(im)) for s, im in zip(ds["source"], ds["image"])}
    assert (imgs["b_rgba.png"][8:24, 8:24] == 0).all() and imgs["b_rgba.png"][0, 0] == 255
    assert (imgs["c_palette.gif"] == 255).all()
    assert (imgs["d_16bit.png"] == 0).all()
    assert (imgs["e_tiny.bmp"][0] == 255).all() and (imgs["e_tiny.bmp"][16] == 0).all()
    huge = imgs["f_huge.jpg"]  # 2400×1800 padded to 2400², square from (900,900) to (1500,1500)
    assert huge[16, 16] == 0 and huge[5, 5] == 255 and huge[27, 27] == 255
    reasons = {p.split("/")[-1]: why for p, why in skipped}
    assert set(reasons) == {"g_corrupt.png", "h_fake.png", "notes.txt", "sub"}
    assert "unreadable" in reasons["g_corrupt.png"] and "unreadable" in reasons["h_fake.png"]
    assert ".txt" in reasons["notes.txt"]


def test_import_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        dio.import_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    ds, skipped = dio.import_image_folder(tmp_path / "empty")
    assert len(ds) == 0 and skipped == [] and ds.column_names == ["program", "image", "source"]


def test_resolve_targets_kinds(tmp_path):
    ds = dio.programs_to_dataset(PROGRAMS, size=16)
    dio.save_dataset(ds, tmp_path / "ds")
    assert dio.load_targets(tmp_path / "ds")["program"] == PROGRAMS
    dio.write_jsonl([{"program": p} for p in PROGRAMS], tmp_path / "p.jsonl")
    from_jsonl = dio.load_targets(tmp_path / "p.jsonl", size=16)
    assert from_jsonl["program"] == PROGRAMS
    (tmp_path / "imgs").mkdir()
    Image.fromarray(render(PROGRAMS[0], 16)).save(tmp_path / "imgs" / "one.png")
    (tmp_path / "imgs" / "junk.txt").write_text("x")
    with pytest.warns(UserWarning, match="skipped 1 file"):
        folder = dio.load_targets(tmp_path / "imgs", size=16)
    np.testing.assert_array_equal(np.asarray(folder[0]["image"]), render(PROGRAMS[0], 16))
    single, skipped = dio.resolve_targets(tmp_path / "imgs" / "one.png", size=16)
    assert single["source"] == ["one.png"] and skipped == []
    with pytest.raises(DataError, match="no such file or folder"):
        dio.load_targets(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="readable image"):
        dio.load_targets(tmp_path / "imgs" / "junk.txt")


def test_resolve_named_testset(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("img2prog.data.testsets")

    def load_testset(name, size=256):
        if name != "tiny-test":
            raise KeyError(f"unknown test set {name!r}; known: tiny-test")
        return dio.programs_to_dataset(["(Circle 3 8 8)"], size=size)

    fake.load_testset = load_testset
    monkeypatch.setitem(sys.modules, "img2prog.data.testsets", fake)
    import img2prog.data

    monkeypatch.setattr(img2prog.data, "testsets", fake, raising=False)
    assert dio.load_targets("tiny-test", size=8)["program"] == ["(Circle 3 8 8)"]
    with pytest.raises(DataError, match="known: tiny-test"):
        dio.load_targets("nope-test")
