"""Annotated PNGs: red inside the ROI, untouched outside, safe names, no silent overwrite."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lungct_viewer.core.detection import DetectionParams, detect_slice
from lungct_viewer.core.errors import ExportError
from lungct_viewer.core.export import export_annotated_slices, slice_png_name
from lungct_viewer.core.render import image_region, render_slice, window_to_uint8
from lungct_viewer.core.results import SliceAnalysis
from lungct_viewer.core.study import CTVolume


@pytest.fixture()
def case():
    hu = np.full((2, 200, 200), -800, np.int16)
    hu[:, 60:90, 60:90] = 20
    vol = CTVolume.from_array(hu)
    vol.patient_name = "DOE^JANE"
    probs = np.zeros((16, 16, 3), np.float32)
    probs[..., 0] = 1
    probs[5:8, 5:8] = (0.1, 0.2, 0.7)
    sa = SliceAnalysis(0, probs, np.ones((16, 16), bool), (200, 200), (1.0, 1.0))
    det = detect_slice(sa, vol, DetectionParams(min_area_mm2=1))
    return vol, det


def test_roi_is_red_and_the_rest_untouched(case):
    vol, det = case
    img = render_slice(vol, 0, det, threshold=0.5, model_version="t")
    px = image_region(img, (200, 200)).astype(int)
    grey = window_to_uint8(vol.hu[0], (1500, -600)).astype(int)
    inside = det.roi_mask
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    assert np.all(r[inside] > g[inside] + 40) and np.all(g[inside] == b[inside])
    # away from the ROI, its outline and label, pixels are exactly the windowed grey
    far = np.ones_like(inside)
    far[30:130, 30:200] = False  # ROI [60,110), its outline and its label
    assert np.array_equal(r[far], grey[far]) and np.array_equal(g[far], grey[far])


def test_no_patient_name_unless_asked(case, tmp_path):
    vol, det = case
    a = np.asarray(render_slice(vol, 0, det, threshold=0.5, model_version="t"))
    b = np.asarray(render_slice(vol, 0, det, threshold=0.5, model_version="t", patient_name=vol.patient_name))
    assert not np.array_equal(a[:20], b[:20])  # the name changes the header only when given
    assert np.array_equal(a[40:], b[40:])


def test_export_names_atomic_and_no_overwrite(case, tmp_path):
    vol, det = case
    out = tmp_path / "out"
    paths = export_annotated_slices(vol, {0: det}, [0, 1], out, threshold=0.5, model_version="t")
    assert [p.name for p in paths] == [slice_png_name(0, vol.sop_instance_uids[0]), slice_png_name(1, vol.sop_instance_uids[1])]
    assert len({p.name for p in paths}) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    with Image.open(paths[0]) as im:
        assert im.format == "PNG"
    before = paths[0].read_bytes()
    with pytest.raises(ExportError):
        export_annotated_slices(vol, {0: det}, [0], out, threshold=0.9, model_version="t")
    assert paths[0].read_bytes() == before
    export_annotated_slices(vol, {0: det}, [0], out, threshold=0.9, model_version="t", overwrite=True)
    assert paths[0].read_bytes() != before


def test_slice_png_name_is_safe():
    assert slice_png_name(0, "1.2.3") == "slice_0001_1.2.3.png"
    assert "/" not in slice_png_name(4, "../../etc/passwd")


def test_atomic_writes_leave_no_temp_and_use_normal_permissions(tmp_path):
    import os

    from lungct_viewer.core.atomic import write_json_atomic

    target = tmp_path / "r.json"
    write_json_atomic(target, {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(TypeError):
        write_json_atomic(target, {"a": object()})
    assert target.read_text().strip() == '{\n  "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
