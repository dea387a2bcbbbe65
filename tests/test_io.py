"""Tests for anatpaste.io: the real DICOM/PNG/JPEG files in shared/data and synthetic edge cases."""

from __future__ import annotations

import dataclasses
import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from anatpaste.errors import (
    ImageTooLargeError,
    ImageTooSmallError,
    NoPixelDataError,
    RadiographError,
    UnreadableImageError,
    UnsupportedImageError,
)
from anatpaste.io import SUPPORTED_SUFFIXES, Radiograph, read_radiograph

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DICOM_DIR = DATA / "dicom"
DICOM_FILES = sorted(p.name for p in DICOM_DIR.glob("*.dcm"))
ZHANGLAB_FILES = sorted((DATA / "zhanglab" / "test" / "NORMAL").glob("*.jpeg"))[:3] + sorted(
    (DATA / "zhanglab" / "test" / "PNEUMONIA").glob("*.jpeg")
)[:3]
LUNGMASK_FILES = sorted((DATA / "lungmasks" / "images").glob("*.png"))[:4]

# What each real file should look like once read correctly (see shared/data/README.md).
EXPECTED_LOOK = {
    "RG1_UNCR.dcm": "pa",
    "RG1_J2KR.dcm": "pa",
    "siim_cr_chest_mono2_jpeg.dcm": "pa",
    # MONOCHROME2 pixels under a MONOCHROME1 header on purpose: a reader that honours the header
    # must show it inverted.
    "siim_cr_chest_header_mono1.dcm": "pa_inverted",
    # A canine lateral thorax (veterinary DX): the spine runs across the top, not down the middle.
    "dx_thorax_mono1_small.dcm": "lateral",
}
PATIENT_VALUES = ("Dog^AVeryGood", "123456", "20140422", "Test^Patient", "P-0001", "19700101")


@functools.cache
def read_real(name: str) -> Radiograph:
    """Each real DICOM file is read once per session (RG1_J2KR takes most of a second)."""
    return read_radiograph(DICOM_DIR / name)


def pa_regions(pixels: np.ndarray) -> tuple[float, float, float]:
    """Means of the central vertical band (spine, mediastinum) and the left/right lung fields."""
    h, w = pixels.shape
    rows = slice(h // 4, 3 * h // 4)
    centre = pixels[rows, 2 * w // 5 : 3 * w // 5].mean()
    left = pixels[rows, w // 10 : 3 * w // 10].mean()
    right = pixels[rows, 7 * w // 10 : 9 * w // 10].mean()
    return float(centre), float(left), float(right)


def write_dicom(path: Path, pixels: np.ndarray | None, *, preamble: bool = True, **elements: object) -> Path:
    """Write a small synthetic DICOM (16-bit, 12 stored, MONOCHROME2 unless overridden by ``elements``)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "P-0001"
    ds.PatientBirthDate = "19700101"
    if pixels is not None:
        colour = elements.get("SamplesPerPixel", 1) == 3
        ds.Rows, ds.Columns = pixels.shape[:2] if colour else pixels.shape[-2:]  # (frames,) rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = pixels.dtype.itemsize * 8
        ds.BitsStored = 12 if pixels.dtype.itemsize == 2 else 8
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
        ds.PixelData = pixels.tobytes()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if "BitsStored" in elements:
        ds.HighBit = int(ds.BitsStored) - 1
    ds.is_little_endian, ds.is_implicit_VR = True, False
    if preamble:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128
        pydicom.dcmwrite(path, ds, write_like_original=False)
    else:  # a bare data set: no preamble, no "DICM", no file meta
        ds.is_implicit_VR = True
        pydicom.dcmwrite(path, ds, write_like_original=True)
    return path


RAMP12 = np.arange(4096, dtype=np.uint16).reshape(64, 64)  # every 12-bit value once


# --- the public surface ---------------------------------------------------------------------------


def test_public_api() -> None:
    assert SUPPORTED_SUFFIXES == (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
    rg = Radiograph(pixels=np.zeros((2, 2), np.float32), spacing=None, source="x", modality=None, meta={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        rg.source = "y"  # type: ignore[misc]


# --- real DICOM files -----------------------------------------------------------------------------


def test_dicom_folder_is_listed() -> None:
    assert DICOM_FILES, f"no DICOM files found in {DICOM_DIR}"
    assert set(DICOM_FILES) == set(EXPECTED_LOOK), "classify new files in EXPECTED_LOOK"


@pytest.mark.parametrize("name", DICOM_FILES)
def test_every_dicom_file_loads(name: str) -> None:
    rg = read_real(name)
    ds = pydicom.dcmread(DICOM_DIR / name, stop_before_pixels=True)
    assert rg.pixels.dtype == np.float32
    assert rg.pixels.shape == (ds.Rows, ds.Columns)
    assert rg.pixels.flags.c_contiguous
    assert float(rg.pixels.min()) == 0.0
    assert float(rg.pixels.max()) == 1.0
    assert rg.modality == ds.Modality
    assert rg.source == str(DICOM_DIR / name)
    assert rg.meta["format"] == "dicom"
    assert rg.meta["SOPInstanceUID"] == ds.SOPInstanceUID
    assert rg.meta["PhotometricInterpretation"] == ds.PhotometricInterpretation
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in rg.meta.items())
    assert not any(p in v for v in rg.meta.values() for p in PATIENT_VALUES)
    assert not {"PatientName", "PatientID", "PatientBirthDate"} & set(rg.meta)


@pytest.mark.parametrize("name", DICOM_FILES)
def test_dicom_matches_pydicom_reference_pipeline(name: str) -> None:
    """The float32 fast path equals pydicom's own float64 Modality LUT + VOI + MONOCHROME1 inversion."""
    ds = pydicom.dcmread(DICOM_DIR / name)
    ref = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    if ds.PhotometricInterpretation == "MONOCHROME1":
        ref = 1.0 - ref
    np.testing.assert_allclose(read_real(name).pixels, ref, atol=1e-5)


@pytest.mark.parametrize("name", DICOM_FILES)
def test_dicom_looks_like_a_chest(name: str) -> None:
    """Bone and mediastinum brighter than lung: catches a missed or doubled MONOCHROME1 inversion."""
    pixels = read_real(name).pixels
    look = EXPECTED_LOOK[name]
    if look == "lateral":
        h, w = pixels.shape
        spine = pixels[int(0.2 * h) : int(0.35 * h), int(0.2 * w) : int(0.6 * w)].mean()
        lung = pixels[int(0.45 * h) : int(0.65 * h), int(0.4 * w) : int(0.65 * w)].mean()
        assert spine > lung + 0.1
    else:
        centre, left, right = pa_regions(pixels)
        if look == "pa":
            assert centre > left + 0.05
            assert centre > right + 0.05
        else:
            assert centre < left - 0.05
            assert centre < right - 0.05


def test_header_only_photometric_difference_inverts() -> None:
    a = read_real("siim_cr_chest_mono2_jpeg.dcm").pixels
    b = read_real("siim_cr_chest_header_mono1.dcm").pixels
    np.testing.assert_allclose(a, 1.0 - b, atol=1e-6)


def test_jpeg2000_equals_uncompressed() -> None:
    np.testing.assert_array_equal(read_real("RG1_J2KR.dcm").pixels, read_real("RG1_UNCR.dcm").pixels)


def test_spacing_of_real_files() -> None:
    assert read_real("RG1_UNCR.dcm").spacing is None  # PixelSpacing reads "0.000"
    assert read_real("RG1_J2KR.dcm").spacing is None
    assert read_real("siim_cr_chest_mono2_jpeg.dcm").spacing == pytest.approx((0.168, 0.168))
    assert read_real("dx_thorax_mono1_small.dcm").spacing == pytest.approx((1.2, 1.2012))


@pytest.mark.parametrize("name", DICOM_FILES)
def test_first_half_of_a_dicom_file_is_unreadable(name: str, tmp_path: Path) -> None:
    data = (DICOM_DIR / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError):
        read_radiograph(path)


@pytest.mark.parametrize("name", ["dx_thorax_mono1_small.dcm", "siim_cr_chest_mono2_jpeg.dcm"])
def test_truncation_anywhere_gives_a_typed_error(name: str, tmp_path: Path) -> None:
    """Cuts in the header, the pixel data or the JPEG stream: always a RadiographError, never a leak."""
    data = (DICOM_DIR / name).read_bytes()
    path = tmp_path / name
    cuts = [*range(140, 1500, 97), *(len(data) * k // 20 for k in range(1, 20))]
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(RadiographError):
            read_radiograph(path)
    # Cut inside the pixel data: must be reported as unreadable, not as "no pixel data".
    path.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(UnreadableImageError, match="truncated|decode"):
        read_radiograph(path)


# --- real raster files ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ZHANGLAB_FILES, ids=lambda p: p.name)
def test_zhanglab_rgb_grey_jpeg(path: Path) -> None:
    rg = read_radiograph(path)
    assert rg.pixels.shape == (224, 224)
    assert rg.pixels.dtype == np.float32
    assert rg.meta["format"] == "jpeg"
    assert rg.spacing is None
    assert rg.modality is None
    ref = np.asarray(Image.open(path))[..., 0].astype(np.float32)  # stored as R = G = B
    np.testing.assert_allclose(rg.pixels, (ref - ref.min()) / (ref.max() - ref.min()), atol=1e-6)


@pytest.mark.parametrize("path", LUNGMASK_FILES, ids=lambda p: p.name)
def test_lungmask_png(path: Path) -> None:
    rg = read_radiograph(path)
    assert rg.pixels.shape == (512, 512)
    assert rg.meta["format"] == "png"
    centre, left, right = pa_regions(rg.pixels)
    assert centre > left
    assert centre > right


def test_raster_folders_are_listed() -> None:
    assert len(ZHANGLAB_FILES) == 6
    assert len(LUNGMASK_FILES) == 4


# --- synthetic raster files -----------------------------------------------------------------------


def _grey_ramp(h: int = 48, w: int = 64) -> np.ndarray:
    return np.add.outer(np.arange(h) * 3, np.arange(w) * 2).astype(np.uint8)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_png_round_trip(mode: str, tmp_path: Path) -> None:
    values = np.add.outer(np.arange(40) * 1000, np.arange(50) * 7).astype(np.uint16) + 300
    im = Image.frombytes(mode, (50, 40), values.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    path = tmp_path / "sixteen.png"
    im.save(path)
    rg = read_radiograph(path)
    expected = (values - values.min()) / (values.max() - values.min())
    np.testing.assert_allclose(rg.pixels, expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGB", "RGBA"])
def test_grey_png_in_any_mode(mode: str, tmp_path: Path) -> None:
    grey = _grey_ramp()
    im = Image.fromarray(grey)
    im = im.convert(mode) if mode != "P" else im.convert("RGB").quantize(256)  # a grey palette
    path = tmp_path / f"grey_{mode}.png"
    im.save(path)
    rg = read_radiograph(path)
    expected = (grey - grey.min()) / float(grey.max() - grey.min())
    np.testing.assert_allclose(rg.pixels, expected, atol=1 / 255)


def test_rgb_jpeg_that_is_grey(tmp_path: Path) -> None:
    grey = _grey_ramp()
    path = tmp_path / "grey_rgb.jpg"
    Image.fromarray(grey).convert("RGB").save(path, quality=90)
    rg = read_radiograph(path)
    assert rg.pixels.shape == grey.shape
    np.testing.assert_allclose(rg.pixels, (grey - grey.min()) / float(grey.max() - grey.min()), atol=0.05)


def test_rgb_with_small_channel_noise_is_grey(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    grey = _grey_ramp().astype(np.int16) + 10
    rgb = np.clip(grey[..., None] + rng.integers(-2, 3, size=(*grey.shape, 3)), 0, 255).astype(np.uint8)
    path = tmp_path / "almost_grey.png"
    Image.fromarray(rgb).save(path)
    mean = rgb.astype(np.float32).mean(axis=2)
    expected = (mean - mean.min()) / (mean.max() - mean.min())
    np.testing.assert_allclose(read_radiograph(path).pixels, expected, atol=1e-5)


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    grey = np.zeros((40, 80), np.uint8)
    grey[:20, :40] = 255  # bright top-left quadrant
    grey[20:, 40:] = 100
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(grey).save(path, exif=exif, quality=95)
    pixels = read_radiograph(path).pixels
    assert pixels.shape == (80, 40)
    expected = np.rot90(grey, k=-1) / 255.0
    assert np.abs(pixels - expected).mean() < 0.05


def test_colour_photo_png_is_unsupported(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(path)
    with pytest.raises(UnsupportedImageError, match="colour"):
        read_radiograph(path)


def test_colour_palette_png_is_unsupported(tmp_path: Path) -> None:
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[:, :32] = (255, 0, 0)
    rgb[:, 32:] = (0, 0, 255)
    path = tmp_path / "palette.png"
    Image.fromarray(rgb).quantize(4).save(path)
    with pytest.raises(UnsupportedImageError, match="colour"):
        read_radiograph(path)


def test_one_pixel_png_is_too_small(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    Image.new("L", (1, 1), 7).save(path)
    with pytest.raises(ImageTooSmallError):
        read_radiograph(path)


def test_blank_png_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.new("L", (64, 64), 7).save(path)
    with pytest.raises(UnsupportedImageError, match="blank"):
        read_radiograph(path)


@pytest.mark.parametrize("suffix", [".png", ".gif", ".tif"])
def test_multi_frame_raster_is_unsupported(suffix: str, tmp_path: Path) -> None:
    frames = [Image.fromarray(_grey_ramp() + k) for k in range(3)]
    path = tmp_path / f"frames{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImageError):
        read_radiograph(path)


def test_apng_message_names_frames(tmp_path: Path) -> None:
    frames = [Image.fromarray(_grey_ramp() + k) for k in range(3)]
    path = tmp_path / "anim.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedImageError, match="3 frames"):
        read_radiograph(path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR announces width x height but whose IDAT is garbage: only the header is valid."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"not zlib") + chunk(b"IEND", b"")


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(9000, 9000))  # 81 M pixels > 60 M default; IDAT never decoded
    with pytest.raises(ImageTooLargeError):
        read_radiograph(path)
    path.write_bytes(_png_header_only(20000, 20000))  # also beyond Pillow's own bomb limit
    with pytest.raises(ImageTooLargeError):
        read_radiograph(path, max_pixels=10**9)


def test_small_max_pixels_and_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "ok.png"
    Image.fromarray(_grey_ramp()).save(path)
    assert read_radiograph(path).pixels.shape == (48, 64)
    with pytest.raises(ImageTooLargeError):
        read_radiograph(path, max_pixels=48 * 64 - 1)
    with pytest.raises(ImageTooLargeError):
        read_radiograph(path, max_bytes=10)
    with pytest.raises(ImageTooLargeError):
        read_radiograph(DICOM_DIR / "siim_cr_chest_mono2_jpeg.dcm", max_pixels=1000)


# --- bad paths and unknown formats ----------------------------------------------------------------


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(UnreadableImageError, match="PNG, JPEG or DICOM"):
        read_radiograph(path)


@pytest.mark.parametrize("name", ["empty.png", "empty.dcm", "empty"])
def test_empty_file(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(UnreadableImageError, match="empty"):
        read_radiograph(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError, match="directory"):
        read_radiograph(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError, match="no such file"):
        read_radiograph(tmp_path / "nope.dcm")
    with pytest.raises(UnreadableImageError, match="no such file"):
        read_radiograph(str(tmp_path / "nope.png"))


@pytest.mark.parametrize("name", ["noise.dcm", "noise.dicom", "noise"])
def test_random_bytes(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(UnreadableImageError):
        read_radiograph(path)


def test_truncated_png_and_jpeg(tmp_path: Path) -> None:
    for src in (LUNGMASK_FILES[0], ZHANGLAB_FILES[0]):
        data = src.read_bytes()
        path = tmp_path / src.name
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(UnreadableImageError) as info:
            read_radiograph(path)
        assert info.value.__cause__ is not None


def test_other_image_format_is_named(tmp_path: Path) -> None:
    path = tmp_path / "image.bmp"
    Image.fromarray(_grey_ramp()).save(path)
    with pytest.raises(UnsupportedImageError, match="BMP"):
        read_radiograph(path)


# --- synthetic DICOM ------------------------------------------------------------------------------


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "header_only.dcm", None)
    with pytest.raises(NoPixelDataError):
        read_radiograph(path)


def test_multi_frame_dicom(tmp_path: Path) -> None:
    frames = np.stack([RAMP12, RAMP12[::-1], RAMP12.T])
    path = write_dicom(tmp_path / "volume.dcm", frames, NumberOfFrames=3)
    with pytest.raises(UnsupportedImageError, match="3 frames"):
        read_radiograph(path)


def test_monochrome2_and_monochrome1(tmp_path: Path) -> None:
    mono2 = read_radiograph(write_dicom(tmp_path / "m2.dcm", RAMP12))
    mono1 = read_radiograph(write_dicom(tmp_path / "m1.dcm", RAMP12, PhotometricInterpretation="MONOCHROME1"))
    np.testing.assert_allclose(mono2.pixels, RAMP12 / 4095.0, atol=1e-6)
    np.testing.assert_allclose(mono1.pixels, 1.0 - RAMP12 / 4095.0, atol=1e-6)
    assert mono2.meta["voi"] == "none"
    assert mono2.spacing is None


def _expected_rescaled_window() -> np.ndarray:
    hu = RAMP12.astype(np.float64) * 2.0 - 1000.0  # slope 2, intercept -1000
    return np.clip((hu - (3000 - 0.5)) / (4001 - 1) + 0.5, 0.0, 1.0)  # PS3.3 C.11.2.1.2.1, LINEAR


def test_rescale_then_window(tmp_path: Path) -> None:
    window = {"WindowCenter": "3000", "WindowWidth": "4001"}
    path = write_dicom(tmp_path / "ww.dcm", RAMP12, RescaleSlope="2", RescaleIntercept="-1000", **window)
    rg = read_radiograph(path)
    assert rg.meta["voi"] == "window"
    np.testing.assert_allclose(rg.pixels, _expected_rescaled_window(), atol=1e-6)


def test_several_windows_take_the_first(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "ww2.dcm",
        RAMP12,
        RescaleSlope="2",
        RescaleIntercept="-1000",
        WindowCenter=["3000", "100"],
        WindowWidth=["4001", "50"],
    )
    np.testing.assert_allclose(read_radiograph(path).pixels, _expected_rescaled_window(), atol=1e-6)


def test_window_in_monochrome1_is_inverted_after_windowing(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "ww1.dcm",
        RAMP12,
        PhotometricInterpretation="MONOCHROME1",
        RescaleSlope="2",
        RescaleIntercept="-1000",
        WindowCenter="3000",
        WindowWidth="4001",
    )
    np.testing.assert_allclose(read_radiograph(path).pixels, 1.0 - _expected_rescaled_window(), atol=1e-6)


def test_invalid_window_uses_full_range(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "w0.dcm", RAMP12, WindowCenter="100", WindowWidth="0")
    rg = read_radiograph(path)
    assert rg.meta["voi"] == "none"
    np.testing.assert_allclose(rg.pixels, RAMP12 / 4095.0, atol=1e-6)


def test_voi_lut_sequence(tmp_path: Path) -> None:
    lut = (np.arange(4096, dtype=np.uint32) ** 2 // 256).astype(np.uint16)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4096, 0, 16])
    item.add_new("LUTData", "OW", lut.astype("<u2").tobytes())
    path = write_dicom(tmp_path / "voilut.dcm", RAMP12, VOILUTSequence=Sequence([item]))
    rg = read_radiograph(path)
    assert rg.meta["voi"] == "lut"
    expected = lut[RAMP12].astype(np.float64)
    np.testing.assert_allclose(rg.pixels, expected / expected.max(), atol=1e-6)


@pytest.mark.parametrize("sign_extended", [True, False])
def test_signed_12_bit(sign_extended: bool, tmp_path: Path) -> None:
    values = (RAMP12.astype(np.int16) - 2048)[::-1]  # -2048 .. 2047
    stored = values if sign_extended else (values.view(np.uint16) & 0x0FFF).view(np.int16)
    path = write_dicom(tmp_path / "signed.dcm", stored, PixelRepresentation=1)
    np.testing.assert_allclose(read_radiograph(path).pixels, (values + 2048) / 4095.0, atol=1e-6)


def test_bits_above_bits_stored_are_ignored(tmp_path: Path) -> None:
    stored = RAMP12.copy()
    stored[::2] |= 0x8000  # e.g. an overlay plane in bit 15
    path = write_dicom(tmp_path / "overlay.dcm", stored)
    np.testing.assert_allclose(read_radiograph(path).pixels, RAMP12 / 4095.0, atol=1e-6)


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        ({"PixelSpacing": ["0.2", "0.25"]}, (0.2, 0.25)),
        ({"PixelSpacing": ["0.000", "0.000"], "ImagerPixelSpacing": ["0.15", "0.15"]}, (0.15, 0.15)),
        ({"ImagerPixelSpacing": ["0.14", "0.14"]}, (0.14, 0.14)),
        ({"PixelSpacing": ["-1", "1"]}, None),
        ({"PixelSpacing": ["0.2"]}, None),
        ({}, None),
    ],
)
def test_spacing(elements: dict[str, object], expected: tuple[float, float] | None, tmp_path: Path) -> None:
    rg = read_radiograph(write_dicom(tmp_path / "sp.dcm", RAMP12, **elements))
    assert rg.spacing == (pytest.approx(expected) if expected else None)


def test_dicom_without_suffix_is_found_by_its_preamble(tmp_path: Path) -> None:
    rg = read_radiograph(write_dicom(tmp_path / "IM0001", RAMP12))
    assert rg.meta["format"] == "dicom"
    assert rg.modality == "CR"


def test_dicom_without_preamble_or_file_meta(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "bare.dcm", RAMP12, preamble=False)
    assert path.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_radiograph(path).pixels, RAMP12 / 4095.0, atol=1e-6)


def test_rgb_dicom_that_is_grey_and_one_that_is_not(tmp_path: Path) -> None:
    grey = _grey_ramp(64, 64)
    rgb_elements = {"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB", "PlanarConfiguration": 0}
    path = write_dicom(tmp_path / "rgb.dcm", np.repeat(grey[..., None], 3, axis=2), **rgb_elements)
    expected = (grey - grey.min()) / float(np.ptp(grey))
    np.testing.assert_allclose(read_radiograph(path).pixels, expected, atol=1e-6)
    noise = np.random.default_rng(3).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    path = write_dicom(tmp_path / "colour.dcm", noise, **rgb_elements)
    with pytest.raises(UnsupportedImageError, match="colour"):
        read_radiograph(path)


@pytest.mark.parametrize("colour", [False, True])
def test_ybr_jpeg_dicom(colour: bool, tmp_path: Path) -> None:
    """A secondary capture stored as colour JPEG (YBR_FULL_422): fine when grey, refused when colour."""
    grey = _grey_ramp(64, 64)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if colour:
        rgb = np.random.default_rng(4).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG", quality=95)
    path = write_dicom(
        tmp_path / "ybr.dcm",
        np.zeros((64, 64, 3), np.uint8),
        SamplesPerPixel=3,
        PhotometricInterpretation="YBR_FULL_422",
        PlanarConfiguration=0,
    )
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([jpeg.getvalue()])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, write_like_original=False)
    if colour:
        with pytest.raises(UnsupportedImageError, match="colour"):
            read_radiograph(path)
    else:
        expected = (grey - grey.min()) / float(np.ptp(grey))
        np.testing.assert_allclose(read_radiograph(path).pixels, expected, atol=0.05)


def test_impossible_header_values_are_refused_before_decoding(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "bits.dcm", RAMP12, BitsStored=4360)
    with pytest.raises(UnreadableImageError, match="Bits Stored"):
        read_radiograph(path)


def test_dicom_pixel_data_shorter_than_the_header_says(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "short.dcm", RAMP12, Rows=128)
    with pytest.raises(UnreadableImageError) as info:
        read_radiograph(path)
    assert info.value.__cause__ is not None
