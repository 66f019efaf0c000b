"""Training (the paper's Eq. 10-12): ``fit`` (PGD adversarial training with the noise on in
x-hat generation), the crash-safe run folder it writes (``run_folder``), the divergence guard
(``guard``) and the whole step as one CUDA graph (``cuda_graphs``)."""
from .trainer import Trainer, TrainingError, TrainingInterrupted, TrainResult, build_model, fit
from .run import train_data, train_run
from .run_folder import RunExistsError, RunFolderError

__all__ = ["RunExistsError", "RunFolderError", "TrainResult", "Trainer", "TrainingError", "TrainingInterrupted",
           "build_model", "fit", "train_data", "train_run"]
