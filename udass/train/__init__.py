"""Training: the step of each method (`step`), the loop around it (`loop`: seeding, optimiser,
EMA teacher, checkpoints and exact resume, logging, DDP, AMP), step-indexed sampling (`sampler`),
the optimiser recipes (`optim`), log.csv (`log`), the entry points of a run (`entry`:
`train`, `udass train`) and the `udass train` line of a Config (`command`)."""
from udass.train.learner import Learner
from udass.train.log import LOG_COLUMNS
from udass.train.entry import config_from_args, finished_metrics, prepare_run, train, train_from_args
from udass.train.long_tail import compute_long_tail
from udass.train.loop import RUN_CONTROL_KEYS, Trainer, TrainingDiverged
from udass.train.optim import build_optimizer, clip_gradients, lr_factor
from udass.train.sampler import StepBatchSampler, make_loader
from udass.train.step import (Networks, StepEnv, StepOutput, StepRecord, dacs_step, quadmix_step,
                              supervised_step)

__all__ = [
    "LOG_COLUMNS", "Learner", "Networks", "RUN_CONTROL_KEYS", "StepBatchSampler", "StepEnv",
    "StepOutput", "StepRecord", "Trainer", "TrainingDiverged", "build_optimizer", "clip_gradients",
    "compute_long_tail", "config_from_args", "dacs_step", "finished_metrics", "lr_factor", "make_loader",
    "prepare_run", "quadmix_step", "supervised_step", "train", "train_from_args",
]
