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


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(description="a <class>/ folder tree, a MedMNIST .npz file or a CSV manifest")
    data_format: Literal["auto", "folder", "npz", "csv"] = "auto"
    class_names: list[str] | None = Field(
        None, description=".npz label names in label order (default: MedMNIST's own, else class_<i>)"
    )
    backbone: str = "efficientnet_lite0"
    weights: str = Field("imagenet", description="imagenet | none | path to a state-dict file")
    weights_dir: Path | None = Field(
        None, description="folder holding <backbone>.safetensors/.pth ImageNet state dicts (timm keys)"
    )
    allow_download: bool = Field(False, description="let timm download ImageNet weights from its hub")
    image_size: int = Field(224, ge=16)
    patient_pattern: str = KERMANY_PATIENT_PATTERN
    split_method: Literal["auto", "given", "patient", "image"] = Field(
        "auto",
        description="auto: the source's own split if it has one, else by patient; image: by image, only "
        "for sources without patient ids (identical files are still kept together)",
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
    imbalance: Literal["none", "class_weights", "oversample", "undersample"] = "class_weights"
    calibrate: bool = Field(True, description="fit a temperature on validation and fold it into the graph")
    target_sensitivity: float | None = Field(
        0.95, gt=0, le=1, description="binary operating point chosen on validation; None = Youden's J"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mixed_precision: bool = Field(True, description="autocast on CUDA; ignored on CPU")
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
        return cls.model_validate(values)

    def weights_request(self) -> "WeightsRequest":
        from training.backbones.weights import WeightsRequest  # imports torch; only when a model is built

        return WeightsRequest(self.weights, self.weights_dir, self.allow_download)

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
