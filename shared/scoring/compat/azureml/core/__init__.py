"""``from azureml.core import Model, Run`` inside scoring processes."""

from shared.scoring.compat.azureml.core.model import Model
from shared.scoring.compat.azureml.core.run import Run

__all__ = ["Model", "Run"]
