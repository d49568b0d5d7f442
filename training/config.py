"""The one settings object for a training run: YAML file + command-line overrides, saved resolved."""

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

# Kermany names: personNNN_bacteria_MMM / personNNN_virus_MMM (pneumonia), IM-NNNN-MMMM and
# NORMAL2-IM-NNNN-MMMM (normal). IM-0115 and NORMAL2-IM-0115 are deliberately the same key: merging
# two patients can only make the split stricter, splitting one patient would leak.
KERMANY_PATIENT_PATTERN = r"^(?:NORMAL2-)?(?P<patient>IM-\d+|person\d+)"

if TYPE_CHECKING:
    from training.backbones.weights import WeightsRequest


class AugmentConfig(BaseModel):
    """Light, chest-safe augmentation. No flips: laterality (heart on the left) carries meaning."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    rotation_degrees: float = Field(7.0, ge=0, le=45)
    scale: tuple[float, float] = (0.92, 1.08)
    shift_fraction: float = Field(0.05, ge=0, le=0.3)
    brightness: float = Field(0.08, ge=0, le=0.5)
    contrast: float = Field(0.15, ge=0, le=0.9)
    horizontal_flip: bool = Field(False, description="off for chest films: laterality carries meaning")
    acquisition: float = Field(
        0.0,
        ge=0,
        le=1,
        description="per-film probability of acquisition shifts (training.data.shifts)",
    )
    acquisition_ops: int = Field(2, ge=1, le=6, description="shifts drawn per shifted film")
    annotations: float = Field(
        0.0, ge=0, le=1, description="per-film probability of burned-in text, markers, rulers, wires"
    )


class SourceConfig(BaseModel):
    """One data source of a multi-source run: its own root, format, labels and grouping."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="names the source in split.csv and reports")
    data_dir: Path = Field(description="a <class>/ folder tree or a CSV manifest")
    data_format: Literal["auto", "folder", "csv"] = "auto"
    label_map: dict[str, str] = Field(
        default_factory=dict,
        description="the source's class name -> the run's class name (e.g. COVID: PNEUMONIA); unmapped "
        "names are kept as they are",
    )
    grouping: Literal["patient", "near_duplicate"] = Field(
        "patient",
        description="patient: films grouped by patient_pattern (and near-duplicates); near_duplicate: no "
        "patient ids, films grouped by perceptual hash only",
    )
    patient_pattern: str | None = Field(
        None, description="grouping patient: regex with a (?P<patient>...) group"
    )
    max_films: int | None = Field(
        None,
        ge=2,
        description="a seeded, class-stratified subsample of this many films (studies, smoke runs)",
    )

    @model_validator(mode="after")
    def _pattern(self) -> "SourceConfig":
        if self.grouping == "patient" and self.patient_pattern is None:
            raise ValueError(f"source {self.name}: grouping 'patient' needs a patient_pattern")
        return self


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path | None = Field(
        None, description="a <class>/ folder tree, a MedMNIST .npz file or a CSV manifest (or give sources)"
    )
    sources: list[SourceConfig] | None = Field(
        None, min_length=1, description="several labelled sources in one run, instead of data_dir"
    )
    near_duplicate_distance: int = Field(
        12, ge=0, le=64, description="256-bit difference hashes this close (Hamming) are one film's copies"
    )
    data_format: Literal["auto", "folder", "npz", "csv"] = "auto"
    class_names: list[str] | None = Field(
        None, description=".npz label names in label order (default: MedMNIST's own, else class_<i>)"
    )
    intended_population: str | None = Field(
        None, description="who the model is for, in words: copied into the model card and /v1/models"
    )
    backbone: str = "efficientnet_lite0"
    weights: str = Field("imagenet", description="imagenet | none | path to a state-dict file")
    weights_dir: Path | None = Field(
        None, description="folder holding <backbone>.safetensors/.pth ImageNet state dicts (timm keys)"
    )
    allow_download: bool = Field(False, description="let timm download ImageNet weights from its hub")
    image_size: int = Field(224, ge=16)
    patient_pattern: str = KERMANY_PATIENT_PATTERN
    split_method: Literal["auto", "given", "patient", "image", "near_duplicate"] = Field(
        "auto",
        description="auto: the source's own split if it has one, else by patient; image: by image, only "
        "for sources without patient ids (identical files are still kept together); near_duplicate: "
        "films grouped by difference hash, for sources without patient ids that hold re-encoded copies",
    )
    drop_leaked_copies: bool = Field(
        False,
        description="given splits: drop validation/test films identical to earlier-split films instead of "
        "refusing the split (the count is recorded)",
    )
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.0, ge=0, lt=1, description="held-out test split, never used for selection")
    seed: int = 0
    batch_size: int = Field(32, ge=2)
    head_epochs: int = Field(2, ge=0, description="phase 1: backbone frozen, head only")
    head_lr: float = Field(1e-3, gt=0)
    finetune_epochs: int = Field(2, ge=0, description="phase 2: everything trainable")
    finetune_lr: float = Field(1e-4, gt=0)
    finetune_blocks: int | None = Field(
        None, ge=1, description="phase 2 trains only the last N feature blocks (and the head); None = all"
    )
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    weight_decay: float = Field(1e-4, ge=0, description="L2 (decoupled for adamw)")
    l1: float = Field(0.0, ge=0, description="L1 penalty on all trainable weights, added to the loss")
    patience: int = Field(2, ge=1, description="epochs without a better validation AUC before a phase stops")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="cross-entropy label smoothing")
    imbalance: Literal["none", "class_weights", "oversample", "undersample"] = "class_weights"
    calibrate: bool = Field(True, description="fit a temperature on validation and fold it into the graph")
    target_sensitivity: float | None = Field(
        0.95, gt=0, le=1, description="binary operating point chosen on validation; None = Youden's J"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = Field(True, description="bf16 autocast on CUDA; on CPU see cpu_bf16")
    cpu_bf16: bool = Field(
        False,
        description="bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX), fp32 elsewhere: Lite0 at "
        "224 px trains 2x faster on the 2-core build machine (docs/training.md); weights stay fp32",
    )
    augment: AugmentConfig = AugmentConfig()
    positive_class: str | None = Field(None, description="default: the class not named NORMAL")
    output_dir: Path = Path("runs")
    run_name: str | None = None
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 keeps torch's default")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap for smoke runs")

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, values: Any) -> Any:
        # Run folders written before ``imbalance`` existed stay exportable.
        if isinstance(values, dict) and "class_weighted_loss" in values:
            values = dict(values)
            weighted = values.pop("class_weighted_loss")
            values.setdefault("imbalance", "class_weights" if weighted else "none")
        return values

    @model_validator(mode="after")
    def _one_data_source(self) -> "TrainConfig":
        if (self.data_dir is None) == (self.sources is None):
            raise ValueError("give either data_dir (one source) or sources (a list), not both or neither")
        if self.sources is not None:
            names = [s.name for s in self.sources]
            if len(set(names)) != len(names):
                raise ValueError(f"source names must be unique: {names}")
        return self

    @model_validator(mode="after")
    def _fractions(self) -> "TrainConfig":
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave some training data")
        return self

    @model_validator(mode="after")
    def _some_training(self) -> "TrainConfig":
        if self.head_epochs + self.finetune_epochs == 0:
            raise ValueError("head_epochs + finetune_epochs must be at least 1")
        return self

    @model_validator(mode="after")
    def _image_fits_backbone(self) -> "TrainConfig":
        # Fail at config time, not deep inside a convolution: some backbones need a larger film.
        from training.backbones.factory import MIN_IMAGE_SIZE  # imports torch; only when validating

        minimum = MIN_IMAGE_SIZE.get(self.backbone, 0)
        if self.image_size < minimum:
            raise ValueError(f"{self.backbone} needs image_size >= {minimum} (got {self.image_size})")
        return self

    @classmethod
    def from_sources(cls, yaml_path: Path | None, overrides: dict[str, Any]) -> "TrainConfig":
        values: dict[str, Any] = {}
        if yaml_path is not None:
            values = yaml.safe_load(yaml_path.read_text()) or {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if overrides.get("data_dir") is not None:
            values.pop("sources", None)  # --data on the command line replaces the file's sources
        if yaml_path is not None:
            _resolve_paths(values, yaml_path.parent)
        return cls.model_validate(values)

    def weights_request(self) -> "WeightsRequest":
        from training.backbones.weights import WeightsRequest  # imports torch; only when a model is built

        return WeightsRequest(self.weights, self.weights_dir, self.allow_download)

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))


def _resolve_paths(values: dict[str, Any], base: Path) -> None:
    """Source roots in a committed YAML are relative to the YAML's folder, so it works from any cwd."""
    for source in values.get("sources") or []:
        if isinstance(source, dict) and "data_dir" in source:
            path = Path(source["data_dir"])
            source["data_dir"] = str(path if path.is_absolute() else (base / path).resolve())
