"""``train``: the method's optimisation on a patch set, with a tf.data pipeline.

Cross-entropy, Adam (learning rate 5e-4), global batch 400, the model's dropout (0.3 after
each pooling, 0.5 after the 432-unit layer), fixed seeds. Validation is the patch set's
``val`` split (held-back patients). Early stopping on validation loss (best weights kept).

Outputs in the run folder: ``checkpoints/best.keras`` and ``checkpoints/last.keras``,
``history.csv``, ``tensorboard/``, ``backup/`` (training state for resuming: run the same
command again and it continues from the last finished epoch), ``model.keras`` and
``train_summary.json`` at the end.

Distribution (:mod:`training.distribute`): ``--strategy auto`` picks
:class:`tf.distribute.MultiWorkerMirroredStrategy` when ``TF_CONFIG`` is set,
:class:`tf.distribute.MirroredStrategy` when more than one GPU is visible, else the default
strategy. The batch of 400 is the global batch (split across replicas); the dataset is
sharded by data across workers. The chief (worker 0) writes the run folder, every other
worker the same files under ``workers/<index>/``; a time budget stops all workers at the
same epoch. Random augmentation is stateless (keyed by seed and stream position), so a run
is repeatable and several workers see exactly the batches one process would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungct_viewer.core import constants as C
from lungct_viewer.core.errors import DataError

from .distribute import pick_strategy, prepare_model, worker_role
from .patchset import load_patch_set


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = C.BATCH_SIZE
    learning_rate: float = C.LEARNING_RATE
    seed: int = 1234
    patience: int = 4
    epoch_size: int | None = None  # patches per epoch (default: the whole training split)
    max_minutes: float | None = None  # stop after this wall time (end of the running epoch)
    strategy: str = "auto"
    resume: bool = False  # continue from checkpoints/last.keras and history.csv
    val_size: int | None = None  # validate on a fixed class-balanced subsample of this size
    texture_augmentation: bool = False  # random gain / offset / noise on every training patch
    init_model: str | None = None  # start from this model's weights (fine-tuning), fresh optimizer
    verbose: int = 2


def tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


# Scanner variation applied to every training patch whatever its class (units: the model's
# [0, 1] intensity scale, 1.0 = 1400 HU): a gain, an offset (+-0.02 = +-28 HU) and added
# noise (sigma up to 0.012 = 17 HU) on the tissue, never on the clipped air below -1000 HU.
TEXTURE_GAIN = 0.05
TEXTURE_OFFSET = 0.02
TEXTURE_NOISE_MAX = 0.012
HU_PER_UNIT = C.INPUT_HU_MAX - C.INPUT_HU_MIN  # HU per unit of the model's [0, 1] scale


def texture_augmentation_text() -> str:
    """The scanner variation in words, from the constants above (for the model card)."""
    return (
        f"random gain {1 - TEXTURE_GAIN:.2f}-{1 + TEXTURE_GAIN:.2f}, offset +-{TEXTURE_OFFSET * HU_PER_UNIT:.0f} HU "
        f"and noise sigma up to {TEXTURE_NOISE_MAX * HU_PER_UNIT:.0f} HU on tissue, whatever the class"
    )


def make_dataset(x: np.ndarray, y: np.ndarray, batch: int, seed: int, training: bool, texture: bool = False):
    """tf.data pipeline: float16 patches -> float32 (50, 50, 1); random horizontal flips and,
    with ``texture``, a random gain, offset and noise level per patch (see ``TEXTURE_*``), so
    that a patient's or scanner's intensity and noise are no cue for the class.

    The random choices are stateless, keyed by ``seed`` and the patch's position in the
    shuffled stream, so the same seed gives the same batches whatever the parallelism of the
    pipeline and the number of workers (a stateful random op in a parallel ``map`` draws in
    whatever order the threads run)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat().enumerate()

    def prep(*item):
        if training:
            position, (p, label) = item
        else:
            p, label = item
        p = tf.cast(p, tf.float32)[..., None]
        if training:

            def key(k):
                return tf.stack([tf.constant(seed * 8 + k, tf.int64), position])

            p = tf.image.stateless_random_flip_left_right(p, key(0))
            if texture:
                tissue = tf.cast(p > 0.0, tf.float32)
                gain = tf.random.stateless_uniform([], key(1), 1 - TEXTURE_GAIN, 1 + TEXTURE_GAIN)
                offset = tf.random.stateless_uniform([], key(2), -TEXTURE_OFFSET, TEXTURE_OFFSET)
                sigma = tf.random.stateless_uniform([], key(3), 0.0, TEXTURE_NOISE_MAX)
                noise = tf.random.stateless_normal(tf.shape(p), key(4), stddev=sigma)
                p = tf.clip_by_value(p + tissue * ((gain - 1.0) * p + offset + noise), 0.0, 1.0)
        return p, label

    ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).batch(batch, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)


def train(patches: Path, run_dir: Path, cfg: TrainConfig, log=print) -> dict:
    from lungct_viewer.core.model import build_model, configure_tensorflow

    configure_tensorflow()
    import keras

    data = load_patch_set(patches)
    tr, va = data["split"] == 0, data["split"] == 1
    xtr, ytr = data["x"][tr], data["y"][tr]
    xva, yva = data["x"][va], data["y"][va]
    if cfg.val_size and cfg.val_size < len(yva):
        rng = np.random.default_rng(cfg.seed)
        per = cfg.val_size // 3
        keep = np.concatenate(
            [rng.choice(np.nonzero(yva == c)[0], min(per, int((yva == c).sum())), replace=False) for c in range(3)]
        )
        keep.sort()
        xva, yva = xva[keep], yva[keep]
    for name, yy in (("training", ytr), ("validation", yva)):
        missing = [C.CLASS_LABELS[c] for c in range(3) if not (yy == c).any()]
        if missing:
            raise DataError(f"The {name} split of {patches} has no {', '.join(missing)} patch (an empty class).")
    keras.utils.set_random_seed(cfg.seed)
    strategy = pick_strategy(cfg.strategy)
    role = worker_role(strategy)
    run_dir = role.out_dir(run_dir)  # the chief's is the run folder; other workers' a subfolder
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if role.count > 1:
        log(f"worker {role.index} of {role.count}{' (chief)' if role.is_chief else ''}: writing to {run_dir}")
    last = run_dir / "checkpoints" / "last.keras"
    hist_csv = run_dir / "history.csv"
    initial_epoch, best_so_far = 0, None
    with strategy.scope():
        if cfg.resume and last.exists():
            model = keras.models.load_model(last, safe_mode=True)  # weights and optimizer state
            if hist_csv.exists():
                import csv

                rows = list(csv.DictReader(open(hist_csv)))
                initial_epoch = len(rows)
                vals = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
                best_so_far = min(vals) if vals else None
            log(f"resuming from {last} after epoch {initial_epoch}")
        else:
            if not cfg.resume and hist_csv.exists():
                hist_csv.unlink()  # a fresh run starts a fresh log
            model = build_model(cfg.seed)
            if cfg.init_model:
                from lungct_viewer.core.model import load_model

                model.set_weights(load_model(Path(cfg.init_model)).keras_model.get_weights())
                log(f"starting from the weights of {cfg.init_model}")
            model.compile(
                optimizer=keras.optimizers.Adam(cfg.learning_rate),
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
            )
    steps = max(1, (cfg.epoch_size or len(xtr)) // cfg.batch_size)
    ds_tr = make_dataset(xtr, ytr, cfg.batch_size, cfg.seed, True, cfg.texture_augmentation)
    ds_va = make_dataset(xva, yva, cfg.batch_size, cfg.seed, False)
    prepare_model(model, strategy, ds_tr.element_spec)
    t0 = time.time()

    class TimeBudget(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            el = (time.time() - t0) / 60
            log(
                f"epoch {epoch + 1}: {json.dumps({k: round(float(v), 4) for k, v in (logs or {}).items()})} "
                f"({el:.1f} min)"
            )
            if cfg.max_minutes and any_worker(el > cfg.max_minutes):
                log(f"time budget of {cfg.max_minutes} min reached; stopping")
                self.model.stop_training = True

    def any_worker(flag: bool) -> bool:
        """True when ``flag`` is true on any worker: all workers must stop at the same epoch,
        or the ones that go on wait for the others' gradients forever."""
        if role.count == 1:
            return flag
        import tensorflow as tf

        return float(strategy.reduce("SUM", tf.constant(float(flag)), axis=None)) > 0

    early = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=cfg.patience, restore_best_weights=True, verbose=1
    )
    ckpt_best = keras.callbacks.ModelCheckpoint(
        str(run_dir / "checkpoints" / "best.keras"), monitor="val_loss", save_best_only=True
    )
    if best_so_far is not None:
        ckpt_best.best = best_so_far
    cbs = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        ckpt_best,
        keras.callbacks.ModelCheckpoint(str(run_dir / "checkpoints" / "last.keras")),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        early,
        TimeBudget(),
    ]
    if tensorboard_available():
        cbs.insert(4, keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), update_freq="epoch"))
    else:
        log("TensorBoard logs are off: the tensorboard package is not installed (pip install tensorboard)")
    log(
        f"training on {len(xtr)} patches ({np.bincount(ytr, minlength=3).tolist()}), validating on {len(xva)} "
        f"({np.bincount(yva, minlength=3).tolist()}); {steps} steps of {cfg.batch_size} per epoch; "
        f"{strategy.num_replicas_in_sync} replica(s)"
    )
    hist = model.fit(
        ds_tr,
        epochs=cfg.epochs,
        steps_per_epoch=steps,
        validation_data=ds_va,
        callbacks=cbs,
        verbose=cfg.verbose,
        initial_epoch=initial_epoch,
    )
    wall = time.time() - t0
    best = run_dir / "checkpoints" / "best.keras"
    if best.exists():  # the epoch with the lowest validation loss, also after a time-budget stop
        model.load_weights(best)
    model.save(run_dir / "model.keras")
    pred = model.predict(ds_va, verbose=0).argmax(1)
    val_acc = float((pred == yva).mean())
    h = hist.history
    summary = {
        "patches": str(Path(patches).resolve()),
        "train_patches": int(len(xtr)),
        "train_class_counts": np.bincount(ytr, minlength=3).tolist(),
        "val_patches": int(len(xva)),
        "val_class_counts": np.bincount(yva, minlength=3).tolist(),
        "epochs_run": initial_epoch + len(h.get("loss", [])),
        "epochs_this_session": len(h.get("loss", [])),
        "steps_per_epoch": steps,
        "patches_per_epoch": steps * cfg.batch_size,
        "best_val_loss": float(min(h["val_loss"])) if h.get("val_loss") else None,
        "val_accuracy": val_acc,
        "val_per_class_recall": [float((pred[yva == c] == c).mean()) for c in range(3)],
        "wall_time_s": round(wall, 1),
        "throughput_patches_per_s": round(len(h.get("loss", [])) * steps * cfg.batch_size / max(wall, 1e-6), 1),
        "config": cfg.__dict__,
        "replicas": int(strategy.num_replicas_in_sync),
        "workers": role.count,
        "worker_index": role.index,
    }
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    log(f"done in {wall / 60:.1f} min: validation accuracy {val_acc:.3f}")
    return summary
