"""Distributed training with Keras 3 on TensorFlow: the strategy, each worker's role, and two
repairs that Keras 3's ``fit`` needs under ``MultiWorkerMirroredStrategy``.

Measured with TensorFlow 2.21 / Keras 3.15 (two CPU worker processes on one machine, see
``tests/test_multiworker.py``): without the repairs ``fit`` fails before the first step.

1. *Build from shapes.* Under any strategy, Keras first takes one batch from the distributed
   iterator and hands the whole batch structure to ``strategy.reduce`` to learn its shapes.
   ``MultiWorkerMirroredStrategy`` rejects a structure there ("Attempt to convert a value
   (PerReplica ...) to a Tensor"; keras-team/keras#20585), and the batch taken is lost to
   training, so a distributed run would see other batches than a single-process run.
   :func:`prepare_model` builds from the dataset's ``element_spec`` instead.
2. *Rank-1 step results.* Across workers Keras reduces every value a train or test step
   returns with ``strategy.reduce("MEAN", value, axis=0)``, which fails for the scalar loss
   and metrics ("Invalid reduction dimension 0 for input with 0 dimensions").
   :func:`prepare_model` returns them with shape ``(1,)``, whose mean over axis 0 and the
   workers is the scalar Keras expects.

Both act only on the model object they are given (no Keras module is changed) and only
under a multi-worker strategy (1 also under any other distribution strategy); without a
strategy nothing changes.
"""

from __future__ import annotations

import json
import os
import types
from dataclasses import dataclass


def pick_strategy(name: str = "auto"):
    """``multiworker`` (or ``auto`` with ``TF_CONFIG`` set), ``mirrored`` (or ``auto`` with
    more than one GPU; replicas on every GPU, or on every logical CPU device when there is no
    GPU), else the default strategy."""
    import tensorflow as tf

    if name not in ("auto", "default", "mirrored", "multiworker"):
        raise ValueError(f"unknown strategy {name!r}")
    if name == "multiworker" or (name == "auto" and os.environ.get("TF_CONFIG")):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored" or (name == "auto" and len(tf.config.list_physical_devices("GPU")) > 1):
        # all GPUs, else every logical CPU device (one unless the CPU was split, as in tests)
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    return tf.distribute.get_strategy()


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster: worker ``index`` of ``count``; the chief writes
    the run folder, the others their own subfolder."""

    index: int = 0
    count: int = 1
    is_chief: bool = True

    def out_dir(self, run_dir):
        from pathlib import Path

        return Path(run_dir) if self.is_chief else Path(run_dir) / "workers" / str(self.index)


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and bool(
        strategy.extended._in_multi_worker_mode()  # noqa: SLF001 - the public API has no such test
    )


def worker_role(strategy) -> WorkerRole:
    """The role from ``TF_CONFIG`` (``chief``, or worker 0 when there is no chief)."""
    if not is_multi_worker(strategy):
        return WorkerRole()
    cfg = json.loads(os.environ.get("TF_CONFIG", "{}"))
    cluster = cfg.get("cluster", {})
    task = cfg.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    count = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    has_chief = bool(cluster.get("chief"))
    chief = kind == "chief" or (not has_chief and kind == "worker" and index == 0)
    if has_chief and kind == "worker":
        index += 1  # the chief is worker 0 of the run
    return WorkerRole(index=index, count=max(count, 1), is_chief=chief)


def prepare_model(model, strategy, element_spec) -> None:
    """Apply the repairs of the module docstring to a compiled ``model`` (see there)."""
    if getattr(model, "_distribute_strategy", None) is None:
        return
    if hasattr(model, "_maybe_symbolic_build"):

        def maybe_symbolic_build(self, iterator=None, data_batch=None):
            with self.distribute_strategy.scope():
                self._symbolic_build(data_batch=element_spec if data_batch is None else data_batch)

        model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)
    if is_multi_worker(strategy):
        import tensorflow as tf

        def rank1(step):
            def wrapped(data):
                return tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(data))

            return wrapped

        model.train_step = rank1(model.train_step)
        model.test_step = rank1(model.test_step)
