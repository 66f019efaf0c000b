"""Training (the paper's Eq. 10-12): ``fit`` (PGD adversarial training with the noise on in
x-hat generation), the crash-safe run folder it writes (``run_folder``), the divergence guard
(``guard``), the whole step as one CUDA graph (``cuda_graphs``) and several runs at once in one
process (``concurrent``)."""
from .trainer import Trainer, TrainingError, TrainingInterrupted, TrainResult, build_model, fit
from .run import train_data, train_run
from .concurrent import train_concurrently
from .run_folder import RunExistsError, RunFolderError

__all__ = ["RunExistsError", "RunFolderError", "TrainResult", "Trainer", "TrainingError", "TrainingInterrupted",
           "build_model", "fit", "train_concurrently", "train_data", "train_run"]
