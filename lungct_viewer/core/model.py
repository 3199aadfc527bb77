"""The method's CNN, its model card, and safe saving/loading of ``.keras`` files.

TensorFlow/Keras is imported inside the functions so that importing this module is cheap.

Architecture (the method's, with unpadded convolutions so dense inference is exact)::

    input 50x50x1
    conv3x3 54 ReLU (48) -> conv3x3 54 ReLU (46) -> maxpool 2x2 (23) -> dropout 0.3
    conv3x3 108 ReLU (21) -> conv3x3 108 ReLU (19) -> conv3x3 108 ReLU (17)
    -> maxpool 2x2 (8) -> dropout 0.3
    flatten (8*8*108 = 6912) -> dense 432 ReLU -> dropout 0.5 -> dense 3 softmax

The method describes a 13x13x108 final feature map (padded convolutions); this model uses
``valid`` convolutions (8x8x108) so that a whole slice can be classified in one fully
convolutional pass with outputs identical to patch-by-patch classification.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import constants as C
from .atomic import atomic_path, write_json_atomic
from .errors import ModelLoadError

MODEL_FILENAME = "lungct_cnn.keras"
CARD_FILENAME = "model_card.json"
#: Layer names the dense inference path reads weights from.
CONV_LAYER_NAMES = tuple(f"conv{i + 1}" for i in range(len(C.CONV_FILTERS)))
DENSE_HIDDEN_NAME = "fc1"
DENSE_OUT_NAME = "fc2"


def configure_tensorflow() -> None:
    """Quiet TensorFlow's start-up logging and let GPU memory grow on demand."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass


def build_model(seed: int | None = None):
    """Build (untrained) the method's 3-class patch CNN as a Keras functional model."""
    configure_tensorflow()
    import keras
    from keras import layers

    if seed is not None:
        keras.utils.set_random_seed(seed)
    inp = keras.Input((C.PATCH_SIZE_PX, C.PATCH_SIZE_PX, 1), name="patch")
    x = inp
    for i, filters in enumerate(C.CONV_FILTERS):
        x = layers.Conv2D(filters, C.CONV_KERNEL, padding="valid", activation="relu", name=CONV_LAYER_NAMES[i])(x)
        if i == 1:
            x = layers.MaxPooling2D(2, name="pool1")(x)
            x = layers.Dropout(C.DROPOUT_CONV, name="drop1")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Dropout(C.DROPOUT_CONV, name="drop2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(C.DENSE_UNITS, activation="relu", name=DENSE_HIDDEN_NAME)(x)
    x = layers.Dropout(C.DROPOUT_DENSE, name="drop3")(x)
    out = layers.Dense(C.NUM_CLASSES, activation="softmax", name=DENSE_OUT_NAME)(x)
    return keras.Model(inp, out, name="lungct_patch_cnn")


@dataclass
class ModelCard:
    """What a model is, how it was made and how well it did (stored as JSON beside it)."""

    version: str
    name: str = "LungCT patch CNN"
    created: str = ""
    input: dict[str, Any] = field(
        default_factory=lambda: {
            "patch_size_px": C.PATCH_SIZE_PX,
            "stride_px": C.PATCH_STRIDE_PX,
            "channels": 1,
            "pixel_spacing_mm": C.MODEL_PIXEL_SPACING_MM,
        }
    )
    preprocessing: str = (
        f"in-plane bilinear resampling to {C.MODEL_PIXEL_SPACING_MM} mm/pixel; HU clipped to "
        f"[{C.INPUT_HU_MIN:g}, {C.INPUT_HU_MAX:g}] and scaled linearly to [0, 1]"
    )
    classes: list[str] = field(default_factory=lambda: list(C.CLASS_NAMES))
    architecture: str = (
        "conv54-conv54-maxpool-drop0.3-conv108x3-maxpool-drop0.3-fc432-drop0.5-fc3 softmax, "
        "3x3 valid convolutions (final feature map 8x8x108 instead of the method's 13x13x108)"
    )
    training_data: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    operating_point: dict[str, Any] = field(
        default_factory=lambda: {
            "voting_threshold": C.DEFAULT_VOTING_THRESHOLD,
            "min_roi_probability": C.DEFAULT_MIN_ROI_PROBABILITY,
            "min_votes": C.DEFAULT_MIN_VOTES,
        }
    )
    deviations_from_method: list[str] = field(default_factory=list)
    intended_use: str = "Research use only - not for clinical diagnosis."
    licences: list[str] = field(default_factory=list)
    reproduce: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "version" not in known:
            raise ModelLoadError("The model card has no version.")
        return cls(**known)


#: Optional entry of a card's ``metrics``: the patient-level voting-threshold curve of the
#: held-back patients, ``{"split": "test", "n": 87, "points": [{"threshold": 0.0,
#: "sensitivity": 1.0, "specificity": 0.0}, ...]}`` (a bare list of such points, e.g. the rows
#: of ``training.metrics.threshold_curve``, is read too; other keys of a point are ignored).
#: Cards without it stay valid: :func:`threshold_curve` returns ``None`` and
#: :func:`operating_points` gives the single points every card holds.
THRESHOLD_CURVE_KEY = "patient_threshold_curve"


@dataclass(frozen=True)
class ThresholdPoint:
    """Patient-level sensitivity and specificity of the call ``malignant fraction >= threshold``."""

    threshold: float
    sensitivity: float | None
    specificity: float | None


@dataclass(frozen=True)
class ThresholdCurve:
    """A model's patient-level threshold curve (see :data:`THRESHOLD_CURVE_KEY`)."""

    points: tuple[ThresholdPoint, ...]
    split: str = ""
    n: int | None = None

    def at(self, threshold: float) -> ThresholdPoint:
        """The curve point nearest ``threshold`` (the curve is measured on a grid; between
        two grid thresholds the figures are not known exactly)."""
        return min(self.points, key=lambda p: (abs(p.threshold - threshold), p.threshold))


def _opt_float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def threshold_curve(card: ModelCard) -> ThresholdCurve | None:
    """The card's patient-level threshold curve, or ``None`` when it records none (or a
    malformed one)."""
    raw = (card.metrics or {}).get(THRESHOLD_CURVE_KEY)
    meta: dict[str, Any] = {}
    if isinstance(raw, dict):
        meta, raw = raw, raw.get("points")
    if not isinstance(raw, list):
        return None
    points = []
    for p in raw:
        if not isinstance(p, dict) or _opt_float(p.get("threshold")) is None:
            return None
        points.append(
            ThresholdPoint(float(p["threshold"]), _opt_float(p.get("sensitivity")), _opt_float(p.get("specificity")))
        )
    if not points:
        return None
    n = meta.get("n")
    return ThresholdCurve(
        tuple(sorted(points, key=lambda p: p.threshold)),
        str(meta.get("split", "")),
        int(n) if isinstance(n, int) else None,
    )


@dataclass(frozen=True)
class OperatingPoint:
    """One measured point a card records: where, at which threshold, with what result."""

    name: str  # e.g. "test patients"
    threshold: float
    sensitivity: float | None
    specificity: float | None
    n: int | None


def operating_points(card: ModelCard) -> list[OperatingPoint]:
    """The patient-level points every card holds (``metrics.patient_level`` on the held-back
    split and ``metrics.validation_patient_level``), at the card's voting threshold."""
    m = card.metrics or {}
    t = _opt_float((card.operating_point or {}).get("voting_threshold"))
    if t is None:
        return []
    split = str(m.get("held_back_split", "test"))
    out = []
    for key, name in (("patient_level", f"{split} patients"), ("validation_patient_level", "validation patients")):
        d = m.get(key)
        if isinstance(d, dict) and (d.get("sensitivity") is not None or d.get("specificity") is not None):
            n = d.get("n")
            out.append(
                OperatingPoint(
                    name,
                    t,
                    _opt_float(d.get("sensitivity")),
                    _opt_float(d.get("specificity")),
                    int(n) if isinstance(n, int) else None,
                )
            )
    return out


@dataclass
class LoadedModel:
    """A Keras model ready for inference, with its card, its second reading (if any) and
    where it came from."""

    keras_model: Any
    card: ModelCard
    path: str
    second_reading: Any = None  # SecondReading | None

    @property
    def version(self) -> str:
        return self.card.version


def card_path_for(model_path: str | os.PathLike[str]) -> Path:
    return Path(model_path).with_name(CARD_FILENAME)


def save_model(model, path: str | os.PathLike[str], card: ModelCard) -> Path:
    """Write ``model`` to ``path`` (``.keras``) and ``model_card.json`` beside it, atomically."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError("the model file name must end in .keras")
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    write_json_atomic(card_path_for(path), card.to_dict())
    return path


def _check_architecture(model, path: Path) -> None:
    shape = tuple(model.input_shape)
    want_in = (None, C.PATCH_SIZE_PX, C.PATCH_SIZE_PX, 1)
    if shape != want_in or tuple(model.output_shape) != (None, C.NUM_CLASSES):
        raise ModelLoadError(
            f"The model file {path.name} has the wrong shape: it takes {shape} and gives "
            f"{model.output_shape}, but this viewer needs 50x50x1 patches in and 3 classes out."
        )
    names = {layer.name for layer in model.layers}
    missing = [n for n in (*CONV_LAYER_NAMES, DENSE_HIDDEN_NAME, DENSE_OUT_NAME) if n not in names]
    if missing:
        raise ModelLoadError(
            f"The model file {path.name} is not this viewer's CNN (missing layers: {', '.join(missing)})."
        )
    for name in CONV_LAYER_NAMES:
        layer = model.get_layer(name)
        if getattr(layer, "padding", "valid") != "valid" or tuple(layer.strides) != (1, 1):
            raise ModelLoadError(
                f"The model file {path.name} uses padded or strided convolutions; this viewer "
                "needs unpadded 3x3 convolutions with stride 1."
            )


def read_model_card(model_path: str | os.PathLike[str]) -> ModelCard:
    """The card beside a model file (no Keras import); a placeholder card when there is none."""
    card_file = card_path_for(model_path)
    if not card_file.is_file():
        return ModelCard(version="unknown", notes=["no model card was found beside the model"])
    try:
        return ModelCard.from_dict(json.loads(card_file.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"The model card {card_file.name} could not be read: {exc}") from exc


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a ``.keras`` model (Keras safe mode) and its card; errors are :class:`ModelLoadError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"No model file was found at {path}.")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"The model file {path.name} is damaged or is not a Keras model (.keras) file.")
    card = read_model_card(path)
    configure_tensorflow()
    import keras

    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for damaged archives
        raise ModelLoadError(
            f"The model file {path.name} could not be loaded; it may be damaged or made by an "
            f"incompatible version ({type(exc).__name__})."
        ) from exc
    _check_architecture(model, path)
    from .second_reading import load_second_reading

    return LoadedModel(keras_model=model, card=card, path=str(path), second_reading=load_second_reading(path))
