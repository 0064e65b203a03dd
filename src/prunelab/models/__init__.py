"""Architectures, initialisers and the prunable-parameter convention.

``build_model(spec, input_shape=..., num_classes=..., seed=...)`` builds any registered
architecture (``model_names()``) and initialises it reproducibly; ``prunable_parameters`` says which
weights pruning may touch, for registry models and for any other ``nn.Module``.
"""

from prunelab.models import cifar_resnet, convnet, lenet, resnet, vgg  # noqa: F401  (registers the architectures)
from prunelab.models.init import initialize
from prunelab.models.prunable import output_layer_name, prunable_from_spec, prunable_parameters
from prunelab.models.registry import build_model, model_names, register_model

__all__ = [
    "build_model",
    "register_model",
    "model_names",
    "initialize",
    "prunable_parameters",
    "prunable_from_spec",
    "output_layer_name",
]
