"""How a network is trained: optimiser, schedule, length, evaluation and checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

from prunelab.specs.base import SpecError, check_choice, spec_field
from prunelab.steps import parse_step

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "multistep", "cosine")


@dataclass(frozen=True)
class TrainingSpec:
    optimizer: str = spec_field("sgd", help=f"one of {', '.join(OPTIMIZERS)}")
    lr: float = spec_field(0.1, help="peak learning rate")
    momentum: float = spec_field(0.0, help="SGD momentum")
    nesterov: bool = spec_field(False, help="Nesterov momentum (SGD)")
    betas: tuple[float, float] = spec_field((0.9, 0.999), help="Adam/AdamW betas")
    weight_decay: float = spec_field(0.0, help="L2 (SGD, Adam) or decoupled (AdamW) weight decay")
    batch_size: int = spec_field(128, help="training batch size")
    steps: str = spec_field("40ep", help="training length, e.g. '160ep', '30000it', '2ep50it'")
    schedule: str = spec_field("multistep", help=f"learning-rate schedule: {', '.join(SCHEDULES)}")
    milestones: tuple[str, ...] = spec_field((), help="multistep: steps at which lr is multiplied by gamma")
    gamma: float = spec_field(0.1, help="multistep: decay factor")
    warmup: str = spec_field("0it", help="linear warm-up length from 0 to lr")
    label_smoothing: float = spec_field(0.0, help="cross-entropy label smoothing")
    data_order_seed: int | None = spec_field(None, help="seed of the data order (default: the experiment seed)")
    augment_seed: int | None = spec_field(None, help="seed of the augmentation (default: the experiment seed)")
    bf16: bool = spec_field(False, help="bfloat16 autocast for forward and loss")
    save_steps: tuple[str, ...] = spec_field(
        (), semantic=False, help="extra steps whose weights are saved (for branching; not in the run name)"
    )
    eval_every: str | None = spec_field(
        "1ep", semantic=False, help="evaluate every this many steps (None: only at the end)"
    )
    checkpoint_every: str = spec_field("1ep", semantic=False, help="resume checkpoint interval")
    eval_batch_size: int = spec_field(1000, semantic=False, help="batch size for evaluation")
    device: str = spec_field("auto", semantic=False, help="auto, cpu, cuda or cuda:N")
    compile: bool = spec_field(False, semantic=False, help="wrap the model in torch.compile")
    progress: bool = spec_field(True, semantic=False, help="show a progress bar on stderr")
    tensorboard: bool = spec_field(False, semantic=False, help="also write TensorBoard event files (needs the extra)")

    def __post_init__(self) -> None:
        check_choice(self.optimizer, OPTIMIZERS, "train.optimizer")
        check_choice(self.schedule, SCHEDULES, "train.schedule")
        for text in (self.steps, self.warmup, self.checkpoint_every, *self.milestones, *self.save_steps):
            parse_step(text)
        if self.eval_every is not None:
            parse_step(self.eval_every)
        if self.lr <= 0 or self.batch_size <= 0:
            raise SpecError("train.lr and train.batch_size must be positive")
        if self.optimizer != "sgd" and (self.momentum or self.nesterov):
            raise SpecError(
                f"train.momentum/nesterov apply to SGD only, not {self.optimizer}: set --train.momentum=0 "
                "(Adam-style optimisers take --train.betas)"
            )
        if self.momentum < 0 or self.weight_decay < 0:
            raise SpecError("train.momentum and train.weight_decay must be non-negative")
