"""Lung region, localised candidates and their shape features, on hand-built volumes."""

from __future__ import annotations

import numpy as np
import pytest

from lungct_viewer.core import constants as C
from lungct_viewer.core.candidates import (
    DESCRIPTOR_NAMES,
    FEATURE_NAMES,
    ObjectCache,
    Seed,
    build_candidates,
    find_core,
    find_seeds,
    segment_object,
)
from lungct_viewer.core.lung import lung_region
from lungct_viewer.core.results import SliceAnalysis
from lungct_viewer.core.texture import SOLID_CORE_MIN_MM, Texture, texture_min_diameter_mm, texture_of

SPACING = (2.5, 0.7, 0.7)  # slice, row, col (mm)


def _chest(n=24, size=256):
    """A body (soft tissue) holding two lungs (air at -850 HU), outside air at -1000 HU."""
    hu = np.full((n, size, size), -1000, np.int16)
    yy, xx = np.mgrid[0:size, 0:size]
    body = ((yy - 128) / 100.0) ** 2 + ((xx - 128) / 120.0) ** 2 <= 1
    hu[:, body] = 40
    for cx in (78, 178):
        lung = ((yy - 128) / 70.0) ** 2 + ((xx - cx) / 42.0) ** 2 <= 1
        hu[:, lung] = -850
    return hu


def _ball(hu, centre, radius_mm, value=30):
    z, y, x = np.ogrid[0 : hu.shape[0], 0 : hu.shape[1], 0 : hu.shape[2]]
    d2 = ((z - centre[0]) * SPACING[0]) ** 2 + ((y - centre[1]) * SPACING[1]) ** 2 + ((x - centre[2]) * SPACING[2]) ** 2
    hu[d2 <= radius_mm**2] = value


def _tube(hu, row, col, radius_mm, value=30):
    """A vessel running along the slice normal through every slice."""
    y, x = np.ogrid[0 : hu.shape[1], 0 : hu.shape[2]]
    disc = ((y - row) * SPACING[1]) ** 2 + ((x - col) * SPACING[2]) ** 2 <= radius_mm**2
    hu[:, disc] = value


def test_lung_region_holds_lungs_and_nodules_but_not_outside_air_or_bowel_gas():
    hu = _chest()
    _ball(hu, (12, 128, 78), 5.0)  # a nodule inside the right lung
    hu[16:20, 215:225, 120:136] = -900  # "bowel gas": air inside the body, small
    region = lung_region(hu, SPACING)
    full = (slice(0, hu.shape[0]), slice(0, hu.shape[1]), slice(0, hu.shape[2]))
    mask = region.crop(full)
    assert mask.shape == hu.shape
    assert mask[12, 128, 78]  # the nodule lies inside the region (hole filled)
    assert mask[5, 128, 60] and mask[5, 128, 190]  # both lungs
    assert not mask[5, 5, 5]  # outside the body
    assert not mask[18, 220, 128]  # bowel gas is not lung
    assert not mask[5, 128, 128]  # the mediastinum between the lungs stays out


def test_a_large_hole_is_not_filled():
    """A lung ringing a large dense disc (the diaphragm dome) does not swallow it."""
    hu = _chest()
    yy, xx = np.mgrid[0:256, 0:256]
    big = ((yy - 128) / 36.0) ** 2 + ((xx - 78) / 30.0) ** 2 <= 1  # ~3,400 px * 0.49 = 1,660 mm2
    hu[:, big] = 40
    region = lung_region(hu, SPACING)
    mask = region.crop((slice(0, 24), slice(0, 256), slice(0, 256)))
    assert not mask[10, 128, 78]
    assert mask[10, 128, 78 - 38]  # the lung ring around it is lung


def test_a_juxtapleural_nodule_of_28_mm_is_lung_and_a_long_dent_is_not():
    """A nodule on a broad pleural base dents the lung over a bounded height and stays in the
    region; a structure of the same width denting the lung over every slice (the spine, the
    aorta, the heart) stays out."""
    hu = _chest()
    yy, xx = np.mgrid[0:256, 0:256]
    # right lung: cols 36-120; the nodule (14 mm radius = 20 px) centred 10 px inside its
    # lateral edge, so that half its radius lies in the chest wall
    _ball(hu, (12, 128, 46), 14.0)
    body = ((yy - 128) / 100.0) ** 2 + ((xx - 128) / 120.0) ** 2 <= 1
    hu[:, body & ~(((yy - 128) / 70.0) ** 2 + ((xx - 78) / 42.0) ** 2 <= 1) & (xx < 78)] = 40  # the wall stays wall
    # left lung: cols 136-220; a 28 mm wide tube along the slice normal on its medial edge
    tube = ((yy - 128) * SPACING[1]) ** 2 + ((xx - 136) * SPACING[2]) ** 2 <= 14.0**2
    hu[:, tube] = 40
    mask = lung_region(hu, SPACING).crop((slice(0, 24), slice(0, 256), slice(0, 256)))
    lung_r = ((yy - 128) / 70.0) ** 2 + ((xx - 78) / 42.0) ** 2 <= 1
    z, y, x = np.ogrid[0:24, 0:256, 0:256]
    ball = ((z - 12) * SPACING[0]) ** 2 + ((y - 128) * SPACING[1]) ** 2 + ((x - 46) * SPACING[2]) ** 2 <= 14.0**2
    in_lung = ball & lung_r[None]
    assert mask[in_lung].mean() >= 0.9
    assert mask[12, 128, 46]  # the nodule's centre
    assert not mask[12, 128, 30]  # the chest wall beside it (4 mm beyond the lung's edge)
    lung_l = ((yy - 128) / 70.0) ** 2 + ((xx - 178) / 42.0) ** 2 <= 1
    dent = tube & lung_l
    assert mask[:, dent].mean() < 0.3
    assert not mask[12, 128, 150]


def test_a_bounded_dent_on_the_mediastinal_side_stays_out():
    """The same 28 mm nodule on the lung's medial edge (where the hila are) is left to the
    10 mm closing: the larger closing's additions join only on the costal side."""
    hu = _chest()
    yy, xx = np.mgrid[0:256, 0:256]
    _ball(hu, (12, 128, 110), 14.0)  # right lung: cols 36-120, its medial edge at 120
    hu[:, (((yy - 128) / 100.0) ** 2 + ((xx - 128) / 120.0) ** 2 <= 1) & (xx > 120) & (xx < 136)] = 40
    mask = lung_region(hu, SPACING).crop((slice(0, 24), slice(0, 256), slice(0, 256)))
    assert not mask[12, 128, 110]


def test_the_diaphragm_dome_is_not_lung_but_a_nodule_above_lung_is():
    """Tissue rising from below into the lung (the dome: liver beneath) is taken out of the
    region slice by slice; a nodule of the same size with lung beneath it is kept."""
    hu = _chest()
    yy, xx = np.mgrid[0:256, 0:256]
    for z in range(14, 24):  # the dome in the right lung, widest at the lowest slice
        r_mm = 6.0 + (z - 14) * 2.0
        hu[z, ((yy - 128) * SPACING[1]) ** 2 + ((xx - 78) * SPACING[2]) ** 2 <= r_mm**2] = 40
    _ball(hu, (8, 128, 178), 6.0)  # a 12 mm nodule in the left lung, lung beneath it
    mask = lung_region(hu, SPACING).crop((slice(0, 24), slice(0, 256), slice(0, 256)))
    assert not mask[14:, 128, 78].any()  # the dome, from its top to the lowest slice
    assert mask[5:11, 128, 178].all()  # the nodule


def test_seeds_are_local_maxima_at_patch_centres():
    gh = gw = 16
    probs = np.zeros((gh, gw, 3), np.float32)
    probs[..., C.NOT_ROI] = 1.0
    probs[5, 7] = (0.001, 0.2, 0.799)  # a peak
    probs[5, 8] = (0.1, 0.5, 0.4)  # a weaker neighbour, not a maximum
    probs[12, 3] = (0.3, 0.7, 0.0)  # P(ROI) 0.7: below a floor of 0.88
    sa = SliceAnalysis(4, probs, np.ones((gh, gw), bool), (200, 200), (1.0, 1.0))
    seeds = find_seeds(sa, floor_logit=np.log(0.88 / 0.12))
    assert len(seeds) == 1
    s = seeds[0]
    assert s.slice_index == 4
    # the centre of window (5, 7) is native (74.5, 94.5); the P(ROI)-weighted 3 x 3 centre
    # stays on its row and moves towards the neighbour (P(ROI) 0.9) on its right
    assert s.row == pytest.approx(74.5, abs=0.01)
    expected_col = (7 * 0.999 + 8 * 0.9) / (0.999 + 0.9) * 10 + 24.5
    assert s.col == pytest.approx(expected_col, abs=0.2)
    assert s.roi_logit == pytest.approx(np.log(0.999 / 0.001), rel=1e-3)
    assert np.isinf(SliceAnalysis(0, probs, np.zeros((gh, gw), bool), (200, 200), (1.0, 1.0)).roi_logit).all()


def test_a_nodule_is_compact_and_a_vessel_runs_out_of_its_cube():
    hu = _chest()
    _ball(hu, (12, 128, 70), 4.0)
    _tube(hu, 110, 180, 1.6)
    lung = lung_region(hu, SPACING)
    nod = find_core(Seed(12, 130.0, 72.0, 5.0), hu, lung, SPACING)
    assert nod is not None and np.hypot(nod[0][1] - 128, nod[0][2] - 70) <= 2
    box, obj, f_nod = segment_object(nod[0], nod[1], hu, lung, SPACING)
    ves = find_core(Seed(12, 111.0, 181.0, 5.0), hu, lung, SPACING)
    _, _, f_ves = segment_object(ves[0], ves[1], hu, lung, SPACING)
    assert set(f_nod) == set(FEATURE_NAMES + DESCRIPTOR_NAMES)
    assert f_nod["faces_touched"] == 0 and f_ves["faces_touched"] == 2  # top and bottom faces
    assert f_nod["elongation"] < 1.6 < f_ves["elongation"]
    assert f_nod["radius_mm"] == pytest.approx(4.0, abs=1.0)
    assert f_nod["volume_mm3"] == pytest.approx(4 / 3 * np.pi * 4.0**3, rel=0.35)
    assert f_nod["wall_contact"] == 0.0
    assert f_nod["mean_hu"] == pytest.approx(30, abs=1)
    assert f_nod["bright_fraction"] == 0.0
    assert f_nod["solid_core_mm"] == pytest.approx(8.0, abs=1.5)  # the whole ball is solid


def test_a_ground_glass_nodule_has_no_solid_core_even_with_a_vessel_through_it():
    """A ground-glass ball (-450 HU) crossed by a solid vessel: the object is the ball, and its
    solid component is the vessel's thickness, too thin to be a solid component; a part-solid
    ball (a solid 3 mm centre) has one."""
    hu = _chest()
    _ball(hu, (12, 128, 70), 5.0, value=-450)
    _tube(hu, 128, 70, 0.7)  # a vessel 1.4 mm across, along the slice normal, through its centre
    _ball(hu, (12, 128, 180), 5.0, value=-450)
    _ball(hu, (12, 128, 180), 3.0, value=20)
    lung = lung_region(hu, SPACING)
    feats = {}
    for name, col in (("glass", 70), ("part", 180)):
        core, radius = find_core(Seed(12, 128.0, float(col), 5.0), hu, lung, SPACING)
        _, _, feats[name] = segment_object(core, radius, hu, lung, SPACING)
    assert feats["glass"]["radius_mm"] >= 3.5  # the object is the ball, not the vessel
    assert feats["glass"]["solid_core_mm"] < SOLID_CORE_MIN_MM
    assert feats["part"]["solid_core_mm"] >= 5.0
    assert texture_of(feats["glass"]["solid_core_mm"], 2.5) is Texture.GROUND_GLASS
    assert texture_of(feats["part"]["solid_core_mm"], 2.5) is Texture.SOLID
    # on 5 mm slices texture is judged only on lesions as many slices across as 6 mm on 2.5 mm
    assert texture_of(feats["glass"]["solid_core_mm"], 5.0) is Texture.NOT_ASSESSED  # size unknown
    assert texture_of(feats["glass"]["solid_core_mm"], 5.0, diameter_mm=10.0) is Texture.NOT_ASSESSED
    assert texture_of(feats["glass"]["solid_core_mm"], 5.0, diameter_mm=12.0) is Texture.GROUND_GLASS
    assert texture_of(feats["part"]["solid_core_mm"], 8.0, diameter_mm=20.0) is Texture.SOLID
    assert [texture_min_diameter_mm(s) for s in (None, 1.0, 2.5, 5.0, 8.0)] == pytest.approx([6, 6, 6, 12, 19.2])
    assert texture_of(None, 1.0) is Texture.NOT_ASSESSED
    # nor under 6 mm, where partial volume thins a small solid nodule's core
    assert texture_of(feats["glass"]["solid_core_mm"], 2.5, diameter_mm=5.0) is Texture.NOT_ASSESSED
    assert texture_of(feats["glass"]["solid_core_mm"], 2.5, diameter_mm=10.0) is Texture.GROUND_GLASS


def test_the_opening_takes_a_touching_vessel_off_a_nodule():
    hu = _chest()
    _ball(hu, (12, 128, 70), 4.5)
    _tube(hu, 128, 77, 0.9)  # a thin vessel through the nodule's edge, every slice
    lung = lung_region(hu, SPACING)
    core, radius = find_core(Seed(12, 128.0, 70.0, 5.0), hu, lung, SPACING)
    _, obj, f = segment_object(core, radius, hu, lung, SPACING)
    assert f["dense_faces_touched"] >= 2  # the dense structure runs through the cube
    assert f["faces_touched"] == 0  # the object, opened, is the nodule alone
    assert f["attachments"] >= 1


def test_objects_found_ahead_give_the_same_candidates():
    """Objects found slice by slice beforehand (as beside the network) are reused, and the
    candidates equal those found from scratch; preparing stops when asked to."""
    hu = _chest()
    _ball(hu, (12, 128, 70), 6.0)
    _tube(hu, 110, 180, 1.6)
    lung = lung_region(hu, SPACING)
    seeds = [Seed(12, 128.0, 70.0, 9.0), Seed(11, 126.0, 72.0, 6.0), Seed(12, 111.0, 181.0, 4.0)]
    plain = build_candidates(seeds, hu, lung, SPACING)
    cache = ObjectCache()
    for z in (11, 12):  # slice by slice, as the network delivers them
        cache.prepare([s for s in seeds if s.slice_index == z], hu, lung, SPACING)
    assert len(cache) == 2  # the nodule (the seed on slice 11 lies on it) and the vessel
    ahead = build_candidates(seeds, hu, lung, SPACING, cache)
    assert len(ahead) == len(plain) == 2
    for a, p in zip(ahead, plain):
        assert (a.id, a.core, a.box, a.features, len(a.seeds)) == (p.id, p.core, p.box, p.features, len(p.seeds))
        assert np.array_equal(a.mask, p.mask) and a.section_axes(SPACING[1:]) == p.section_axes(SPACING[1:])
    # the cached objects themselves are never handed out: a candidate's seeds are its own
    assert all(len(c.seeds) for c in ahead) and len(build_candidates(seeds[2:], hu, lung, SPACING, cache)[0].seeds) == 1
    stopped = ObjectCache()
    stopped.prepare(seeds, hu, lung, SPACING, should_stop=lambda: True)
    assert len(stopped) == 0


def test_seeds_on_one_object_make_one_candidate():
    hu = _chest()
    _ball(hu, (12, 128, 70), 6.0)
    _ball(hu, (12, 128, 180), 3.0)
    lung = lung_region(hu, SPACING)
    seeds = [
        Seed(12, 128.0, 70.0, 9.0),
        Seed(11, 126.0, 72.0, 6.0),
        Seed(13, 131.0, 68.0, 5.0),
        Seed(12, 128.0, 181.0, 4.0),
        Seed(12, 20.0, 20.0, 7.0),
    ]  # the last is outside the lungs
    cands = build_candidates(seeds, hu, lung, SPACING)
    assert len(cands) == 2
    big = max(cands, key=lambda c: c.features["volume_mm3"])
    assert len(big.seeds) == 3 and big.max_roi_logit == 9.0
    assert [c.id for c in cands] == [1, 2]
    z0, z1 = big.slices
    assert z0 <= 12 <= z1
    m = big.slice_mask(12)
    assert m is not None and m[0].any()
    assert big.slice_mask(0) is None


def test_the_object_a_position_lies_on_is_the_first_in_the_order_found():
    """The index of objects by their cubes answers as a scan of every object would: the
    first object (in the order found, among those from a seed at least as strong when asked)
    whose mask lies within the tolerance of the position."""
    from lungct_viewer.core.candidates import Candidate, _inside, _Objects

    rng = np.random.default_rng(5)
    index = _Objects()
    for k in range(40):  # overlapping cubes, so that several may hold a position
        z0, y0, x0 = (int(v) for v in rng.integers(0, 30, 3))
        shape = tuple(int(v) for v in rng.integers(2, 12, 3))
        mask = rng.random(shape) < 0.3
        index.add(
            Candidate(k + 1, (z0, y0, x0), (z0, z0 + shape[0], y0, y0 + shape[1], x0, x0 + shape[2]), mask),
            float(k % 7),
        )
    hits = 0
    for _ in range(400):
        z, row, col = int(rng.integers(0, 42)), float(rng.uniform(-3, 45)), float(rng.uniform(-3, 45))
        tol = int(rng.integers(0, 4))
        min_logit = None if rng.random() < 0.5 else float(rng.integers(0, 7))
        expected = next(
            (
                c
                for c, lg in zip(index.items, index.logits)
                if (min_logit is None or lg >= min_logit) and _inside(c, z, row, col, tol)
            ),
            None,
        )
        assert index.first_on(z, row, col, tol, min_logit) is expected
        hits += expected is not None
    assert hits > 50  # the check saw many positions on objects, not only empty space
