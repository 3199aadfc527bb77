"""Scale-out training shown: two worker processes (``TF_CONFIG`` on 127.0.0.1) run the real
``python -m training train`` command with ``MultiWorkerMirroredStrategy`` on a small phantom
patch set, and their model is compared with a single-process run of the same global batch
and seed.

The reference run is one process whose CPU is split into two logical devices
(``--strategy mirrored``): the same two replicas of half the global batch each, without the
cluster. Each replica draws the model's dropout masks for its half-batch, so that layout, not
one replica holding the whole batch, is the one whose arithmetic the two workers must repeat
(training/README.md gives the one-replica comparison too). Tolerance: 1e-6 on every weight,
a thousandth of how far the weights move from their start in these few steps.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-6
TRAIN_ARGS = [
    "--batch-size",
    "64",
    "--epochs",
    "2",
    "--epoch-size",
    "256",
    "--val-size",
    "90",
    "--seed",
    "3",
    "--learning-rate",
    "1e-3",
]
SPLIT_CPU = (
    "import sys, tensorflow as tf\n"
    "cpu = tf.config.list_physical_devices('CPU')[0]\n"
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
    "from training.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _patch_set(path: Path) -> None:
    """Phantom patches labelled by core's patch rule: 840 training, 630 validation."""
    from phantom_model import phantom_patches

    x, y = phantom_patches(seeds=(11,), n_slices=8, size=160)
    xv, yv = phantom_patches(seeds=(21,), n_slices=6, size=160, rng_seed=1)
    np.savez(
        path,
        x=np.concatenate([x, xv])[..., 0].astype(np.float16),
        y=np.concatenate([y, yv]).astype(np.int64),
        split=np.concatenate([np.zeros(len(y)), np.ones(len(yv))]).astype(np.int8),
    )


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO), **extra)
    return env


def _weights(path: Path) -> list[np.ndarray]:
    from lungct_viewer.core.model import load_model

    return load_model(path).keras_model.get_weights()


def test_two_workers_train_like_one_process(tmp_path):
    patches = tmp_path / "patches.npz"
    _patch_set(patches)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    multi, single = tmp_path / "multi", tmp_path / "single"
    t0 = time.perf_counter()
    procs = []
    logs = []
    for i in range(2):
        log = open(tmp_path / f"worker{i}.log", "w")
        logs.append(log)
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "training",
                    "train",
                    "--patches",
                    str(patches),
                    "--run-dir",
                    str(multi),
                    *TRAIN_ARGS,
                ],
                cwd=REPO,
                env=_env(TF_CONFIG=tf_config),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    log = open(tmp_path / "single.log", "w")
    logs.append(log)
    procs.append(
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                SPLIT_CPU,
                "train",
                "--patches",
                str(patches),
                "--run-dir",
                str(single),
                "--strategy",
                "mirrored",
                *TRAIN_ARGS,
            ],
            cwd=REPO,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for f in logs:
            f.close()
    wall = time.perf_counter() - t0
    text = {f.name: Path(f.name).read_text()[-3000:] for f in logs}
    assert codes == [0, 0, 0], text

    # both workers finished all epochs, the chief in the run folder, worker 1 in its subfolder
    chief = json.loads((multi / "train_summary.json").read_text())
    other = json.loads((multi / "workers" / "1" / "train_summary.json").read_text())
    ref = json.loads((single / "train_summary.json").read_text())
    for s in (chief, other):
        assert (s["workers"], s["replicas"], s["epochs_run"], s["steps_per_epoch"]) == (2, 2, 2, 4)
    assert (chief["worker_index"], other["worker_index"]) == (0, 1)
    assert (ref["workers"], ref["replicas"]) == (1, 2)
    assert len((multi / "history.csv").read_text().splitlines()) == 3

    # the saved models load with the viewer's loader and match the single-process run
    from lungct_viewer.core.model import build_model

    w_chief, w_other = _weights(multi / "model.keras"), _weights(multi / "workers" / "1" / "model.keras")
    w_ref = _weights(single / "model.keras")
    w_init = build_model(3).get_weights()
    diff = max(float(np.abs(a - b).max()) for a, b in zip(w_chief, w_ref))
    moved = max(float(np.abs(a - b).max()) for a, b in zip(w_ref, w_init))
    print(
        f"2 workers vs 1 process (2 replicas): max |weight difference| {diff:.3g}; weights moved up to "
        f"{moved:.3g} from their start; wall time of the three runs {wall:.0f} s"
    )
    assert all(np.array_equal(a, b) for a, b in zip(w_chief, w_other))  # one model, two copies
    assert moved > 1000 * TOLERANCE  # the comparison is not between untrained models
    assert diff <= TOLERANCE
    assert chief["val_accuracy"] == ref["val_accuracy"]
