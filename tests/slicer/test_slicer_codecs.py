"""The Lib's multipart (email), NRRD (SimpleITK) and PNG (Pillow) code, checked against independent
implementations: requests_toolbelt (MONAI Label's encoder), pynrrd, SimpleITK reading PNG."""

from __future__ import annotations

import gzip
import importlib.util
import io
import re

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
from AnatPasteReviewLib.images import ImageDecodeError, encode_png16, read_nrrd, read_result_maps
from AnatPasteReviewLib.multipart import MultipartError, decode_multipart
from PIL import Image
from requests_toolbelt import MultipartEncoder
from slicer_support import REPO


def test_monai_label_style_multipart_is_decoded():
    """MONAI Label answers output=all with requests_toolbelt's MultipartEncoder: params + image."""
    payload = b"NRRD0004\n\n" + bytes(range(256)) * 4 + b"\r\n--\r"  # line ends and a fake delimiter inside
    enc = MultipartEncoder(
        fields={
            "params": (None, '{"score": 1}', "application/json"),
            "image": ("maps.nrrd", payload, "application/octet-stream"),
        }
    )
    params, image = decode_multipart(enc.to_string(), enc.content_type)
    assert (params.name, params.filename, params.content_type, params.data) == (
        "params",
        None,
        "application/json",
        b'{"score": 1}',
    )
    assert (image.name, image.filename, image.data) == ("image", "maps.nrrd", payload)


def test_quoted_boundary_and_errors():
    body = b'preamble\r\n--a b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--a b--\r\n'
    (part,) = decode_multipart(body, 'multipart/form-data; boundary="a b"')
    assert (part.name, part.data) == ("x", b"1")
    with pytest.raises(MultipartError, match="without a boundary"):
        decode_multipart(body, "multipart/form-data")
    with pytest.raises(MultipartError, match="expected a multipart"):
        decode_multipart(body, "application/json")
    with pytest.raises(MultipartError, match="without a header block"):
        decode_multipart(b"--B\r\nno header end\r\n--B--", "multipart/mixed; boundary=B")
    unclosed = b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--B\r\n'
    with pytest.raises(MultipartError, match="truncated"):
        decode_multipart(unclosed, "multipart/x; boundary=B")


def test_delimiter_must_start_a_line():
    """``--B`` inside a payload is data unless it begins a line (RFC 2046), so the part stays whole."""
    body = b'--B\r\nContent-Disposition: form-data; name="x"\r\n\r\nab--B cd\r\n--Bx\r\n--B--\r\n'
    (part,) = decode_multipart(body, "multipart/form-data; boundary=B")
    assert part.data == b"ab--B cd\r\n--Bx"


@pytest.mark.parametrize(
    ("encoding", "endian", "dtype"),
    [("raw", "little", "<f4"), ("gzip", "big", ">f4"), ("raw", "big", ">u2"), ("gzip", "little", "<f8")],
)
def test_nrrd_written_by_pynrrd_is_read(encoding, endian, dtype):
    rng = np.random.default_rng(0)
    data = (rng.random((1, 7, 5, 2)) * 1000).astype(dtype)
    buf = io.BytesIO()
    nrrd.write(buf, data, {"encoding": encoding, "endian": endian}, index_order="C")
    image = read_nrrd(buf.getvalue())
    np.testing.assert_array_equal(image.array, data)
    assert image.array.shape == (1, 7, 5, 2)  # NRRD sizes "2 5 7 1", reversed


def test_the_servers_own_result_writer_is_read_back(tmp_path):
    """monailabel_app's writer (the producer of the contract, gzip-encoded) -> this reader: same maps, same
    spacing."""
    spec = importlib.util.spec_from_file_location(
        "anatpaste_result_image", REPO / "monailabel_app" / "lib" / "result_image.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(1)
    heat = rng.random((30, 20)).astype(np.float32) * 7
    mask = heat > 3
    module.write_maps_nrrd(tmp_path / "m.nrrd", heat, mask, (0.2, 0.3), {"model_version": "v9"})
    data = (tmp_path / "m.nrrd").read_bytes()
    assert b"\nencoding: gzip\n" in data.split(b"\n\n", 1)[0] + b"\n"
    maps = read_result_maps(data, (30, 20))
    np.testing.assert_array_equal(maps.heatmap, heat)
    np.testing.assert_array_equal(maps.lung_mask, mask)
    assert maps.spacing == pytest.approx((0.2, 0.3))


def test_result_maps_refuse_wrong_layouts():
    def nrrd_bytes(data, **header):
        buf = io.BytesIO()
        nrrd.write(buf, data, header, index_order="C")
        return buf.getvalue()

    assert read_result_maps(nrrd_bytes(np.zeros((1, 4, 4, 2), np.float32))).heatmap.shape == (4, 4)
    with pytest.raises(ImageDecodeError, match="sizes '2 W H 1'"):
        read_result_maps(nrrd_bytes(np.zeros((1, 4, 4, 3), np.float32)))
    with pytest.raises(ImageDecodeError, match="the score says 5x4"):
        read_result_maps(nrrd_bytes(np.zeros((1, 4, 4, 2), np.float32)), (5, 4))
    bad = np.zeros((1, 4, 4, 2), np.float32)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ImageDecodeError, match="NaN"):
        read_result_maps(nrrd_bytes(bad))


HEAD = b"NRRD0004\ntype: float\ndimension: 2\nsizes: 2 2\nendian: little\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"P5 not nrrd", "no NRRD000x magic"),
        (b"NRRD0004\ntype: float\n", "no end"),
        (HEAD + b"encoding: raw\n\n\x00\x00", "fread got only 0 4-sized things, not 4"),  # truncated
        (b"NRRD0004\ntype: quaternion\ndimension: 2\nsizes: 2 2\n\n", "couldn't parse type \"quaternion\""),
        (HEAD + b"encoding: bzip2\n\n", "bzip2 encoding not available"),
        (HEAD + b"data file: x.raw\n\n", "detached"),
        (HEAD + b"datafile: /etc/passwd\n\n", "detached"),  # ITK would read any local file it names
        (HEAD + b"encoding: gzip\n\n\x1f\x8b\x08\x00\x00\x00", "GzRead: data read error"),  # corrupt gzip
        (b"NRRD0004\ntype: float\ndimension: 2\nsizes: 2\n\n\0\0\0\0", "parsed 1 values, but dimension is 2"),
    ],
)
def test_nrrd_errors_name_the_problem(data, message):
    with pytest.raises(ImageDecodeError, match=re.escape(message)):
        read_nrrd(data)


def test_gzip_nrrd_with_crlf_header():
    payload = gzip.compress(np.arange(4, dtype="<f4").tobytes())
    head = b"NRRD0004\r\ntype: float\r\ndimension: 2\r\nsizes: 2 2\r\nendian: little\r\nencoding: gzip\r\n\r\n"
    np.testing.assert_array_equal(read_nrrd(head + payload).array, np.arange(4, dtype=np.float32).reshape(2, 2))


def test_png16_round_trip_keeps_orientation_and_scale(tmp_path):
    a = np.zeros((5, 7))
    a[0, :] = 1.0  # top row bright
    a[:, 0] = 0.5
    (tmp_path / "a.png").write_bytes(encode_png16(a))
    got = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a.png")))  # ITK's PNG reader, not Pillow
    assert got.shape == (5, 7)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, np.round(a * 65535).astype(np.uint16))
    assert Image.open(tmp_path / "a.png").mode == "I;16"  # 16-bit grey, no palette or RGB
    flat = np.asarray(Image.open(io.BytesIO(encode_png16(np.full((2, 3), 4.0)))))
    assert flat.max() == 0
    with pytest.raises(ValueError, match="2-D"):
        encode_png16(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        encode_png16(np.array([[np.nan, 1.0]]))
