"""Models: the registry of the paper's architectures (``create_model``), and a model rebuilt
from a checkpoint file (``load_model``); pretrained ones by name are ``pni.models.hub``."""
from .modes import eval_mode, model_device
from .normalize import Normalize
from .registry import MODELS, ModelError, count_parameters, create_model, layer_label, layer_labels
from .lenet import LeNet5
from .resnet18 import ResNet18
from .resnet_cifar import CifarResNet
from .saved import build_from_meta, load_model, model_label, model_meta

__all__ = ["MODELS", "ModelError", "Normalize", "create_model", "count_parameters",
           "layer_label", "layer_labels", "eval_mode", "model_device", "CifarResNet", "ResNet18", "LeNet5",
           "build_from_meta", "load_model", "model_label", "model_meta"]
