"""Response bodies of ``GET /v1/studies``."""

from datetime import datetime

from pydantic import BaseModel, Field


class StudyInstance(BaseModel):
    sop_instance_uid: str
    series_instance_uid: str
    source: str = Field(description="dimse (C-STORE) or stow (STOW-RS)")
    state: str = Field(description="queued, triaging, triaged (results not yet everywhere), done, dead")
    reason: str | None = Field(description="Why a film was dead-lettered (or its last failed attempt)")
    received_at: datetime | None
    finished_at: datetime | None
    predicted_class: str | None
    triage_level: str | None
    probability: float | None = Field(description="p(positive class) for a binary model, else of the call")
    model_name: str | None
    model_version: str | None
    delivery_state: str = Field(description="pending, retrying, delivered, none (no destination, or dead)")
    delivered_at: datetime | None = Field(description="When the last destination took the results")
    delivery_attempts: int = Field(description="Failed delivery rounds so far")
    delivery_error: str | None
    sr_instance_uid: str | None
    sc_instance_uid: str | None


class StudySummary(BaseModel):
    study_instance_uid: str
    received_at: datetime | None = Field(description="First instance received")
    finished_at: datetime | None = Field(description="Last instance finished; null while any is unfinished")
    triage_level: str | None = Field(description="urgent if any film is; routine once triaged; else null")
    probability: float | None = Field(description="Highest probability among its films")
    model_version: str | None
    delivery_state: str = Field(description="The least advanced delivery state of its films")
    instances: list[StudyInstance]


class StudyList(BaseModel):
    total: int = Field(description="Studies matching the filters")
    limit: int
    offset: int
    studies: list[StudySummary]
