"""The one settings object for a training run: YAML file + command-line overrides, saved resolved."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.data.scan import KERMANY_PATIENT_PATTERN


class AugmentConfig(BaseModel):
    """Light, chest-safe augmentation. No flips: laterality (heart on the left) carries meaning."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    rotation_degrees: float = Field(7.0, ge=0, le=45)
    scale: tuple[float, float] = (0.92, 1.08)
    shift_fraction: float = Field(0.05, ge=0, le=0.3)
    brightness: float = Field(0.08, ge=0, le=0.5)
    contrast: float = Field(0.15, ge=0, le=0.9)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: Path
    backbone: str = "efficientnet_lite0"
    weights: str = Field("imagenet", description="imagenet | none | path to a state-dict file")
    image_size: int = Field(224, ge=16)
    patient_pattern: str = KERMANY_PATIENT_PATTERN
    val_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0
    batch_size: int = Field(32, ge=2)
    head_epochs: int = Field(2, ge=0, description="phase 1: backbone frozen, head only")
    head_lr: float = Field(1e-3, gt=0)
    finetune_epochs: int = Field(2, ge=0, description="phase 2: everything trainable")
    finetune_lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(2, ge=1, description="epochs without a better validation AUC before a phase stops")
    class_weighted_loss: bool = True
    augment: AugmentConfig = AugmentConfig()
    positive_class: str | None = Field(None, description="default: the class not named NORMAL")
    output_dir: Path = Path("runs")
    run_name: str | None = None
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 keeps torch's default")
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap for smoke runs")

    @model_validator(mode="after")
    def _some_training(self) -> "TrainConfig":
        if self.head_epochs + self.finetune_epochs == 0:
            raise ValueError("head_epochs + finetune_epochs must be at least 1")
        return self

    @model_validator(mode="after")
    def _image_fits_backbone(self) -> "TrainConfig":
        # Fail at config time, not deep inside a convolution: some backbones need a larger film.
        from training.backbones import MIN_IMAGE_SIZE  # imports torch; only when validating

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

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
