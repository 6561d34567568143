"""``from azureml.core import Model, Run`` inside scoring processes."""

from .model import Model
from .run import Run

__all__ = ["Model", "Run"]
