"""Train the method's CNN briefly on synthetic phantom patches (inside the test session).

Used by tests that need a model that really detects something: the phantom's nodules are
easy, so a minute of training gives a model that finds them and tells the classes apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungct_viewer.core import constants as C
from lungct_viewer.core.field import field_grid
from lungct_viewer.core.model import ModelCard, build_model, save_model
from lungct_viewer.core.patches import label_grid, patch_windows
from lungct_viewer.core.preprocessing import prepare_slice, resample_to_model_spacing


def phantom_patches(seeds=(11, 12), n_slices=14, size=256, rng_seed=0):
    """Balanced ``(x, y)`` patches from phantom volumes, labelled by core's patch rule."""
    from lungct_viewer.core.phantom import phantom_volume

    rng = np.random.default_rng(rng_seed)
    xs, ys = [], []
    for seed in seeds:
        ph = phantom_volume(seed=seed, n_slices=n_slices, size=size)
        vol = ph.volume
        for k in range(vol.num_slices):
            prep = prepare_slice(vol.hu[k], vol.pixel_spacing_mm)
            lab = resample_to_model_spacing(ph.labels[k], vol.pixel_spacing_mm, order=0)
            roi = label_grid(lab > 0)
            win = patch_windows(prep.image)
            lwin = patch_windows(lab)
            for i, j in zip(*np.nonzero(roi == 1)):
                xs.append(win[i, j])
                ys.append(int(np.bincount(lwin[i, j][lwin[i, j] > 0].ravel(), minlength=3).argmax()))
            # negatives mostly from the lung field, where the detector must stay quiet
            infield = field_grid(prep.hu_model)
            for pool, n in ((np.argwhere((roi == 0) & infield), 30), (np.argwhere(roi == 0), 5)):
                for i, j in pool[rng.choice(len(pool), size=min(len(pool), n), replace=False)]:
                    xs.append(win[i, j])
                    ys.append(C.NOT_ROI)
    x = np.stack(xs).astype(np.float32)[..., None]
    y = np.array(ys, dtype=np.int64)
    # balance by horizontal flips of the rarer classes
    counts = np.bincount(y, minlength=3)
    target = counts.max()
    for c in range(3):
        idx = np.nonzero(y == c)[0]
        if 0 < len(idx) < target:
            extra = rng.choice(idx, size=target - len(idx), replace=True)
            x = np.concatenate([x, x[extra][:, :, ::-1]])
            y = np.concatenate([y, y[extra]])
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


def train_phantom_model(out_dir: Path, epochs: int = 4, seed: int = 0) -> tuple[Path, float]:
    """Train, save as ``out_dir/lungct_cnn.keras``; returns (path, held-out accuracy)."""
    import keras

    x, y = phantom_patches()
    xv, yv = phantom_patches(seeds=(21,), rng_seed=1)
    model = build_model(seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
    acc = float(model.evaluate(xv, yv, verbose=0)[1])
    path = save_model(
        model,
        Path(out_dir) / "lungct_cnn.keras",
        ModelCard(version="phantom-test", notes=["trained on synthetic phantom patches in tests"]),
    )
    return path, acc
