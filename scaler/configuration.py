"""The typed `scaling_configuration` of a model: the one statement of its shape and rules.

Field names, defaults and enum spellings follow the OasisPlatform v2 API. The API validates
with this model; the scaling core and the scaler accept it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

# Kubernetes replica counts are int32.
INT32_MAX = 2**31 - 1


def whole_number(value: object) -> object:
    """JSON has one kind of number, and to JSON Schema (so to the OpenAPI document) 3.0 is the
    integer 3: take it as 3. 1.5, true, "3" and null are still refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Count = Annotated[StrictInt, Field(ge=0, le=INT32_MAX), BeforeValidator(whole_number)]
PositiveCount = Annotated[StrictInt, Field(ge=1, le=INT32_MAX), BeforeValidator(whole_number)]


class ScalingStrategy(StrEnum):
    FIXED_WORKERS = "FIXED_WORKERS"
    QUEUE_LOAD = "QUEUE_LOAD"
    DYNAMIC_TASKS = "DYNAMIC_TASKS"


class ScalingConfiguration(BaseModel):
    """How many workers a model asks for; only the chosen strategy's fields act."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scaling_strategy: ScalingStrategy = ScalingStrategy.FIXED_WORKERS
    worker_count_fixed: Count = 1
    worker_count_max: Count = 10
    worker_count_min: Count = 0
    chunks_per_worker: PositiveCount = 10

    @model_validator(mode="after")
    def _min_within_max(self) -> ScalingConfiguration:
        if self.worker_count_min > self.worker_count_max:
            # Both fields are named: a partial update may have changed either one.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    _bound_error(
                        "worker_count_min",
                        self.worker_count_min,
                        "must not be greater than worker_count_max ({other})",
                        self.worker_count_max,
                    ),
                    _bound_error(
                        "worker_count_max",
                        self.worker_count_max,
                        "must not be less than worker_count_min ({other})",
                        self.worker_count_min,
                    ),
                ],
            )
        return self


def _bound_error(field: str, value: int, message: str, other: int) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("worker_count_bounds", message, {"other": other}),
        loc=(field,),
        input=value,
    )
