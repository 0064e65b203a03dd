"""One run of any kind, as a value: a :class:`Trial` is the kind, the spec and the kind's own arguments.

A trial's run id is computed by one function, :func:`trial_run_id`, which dispatches to the kinds' own
naming rules (``train_run_id``, ``lottery_run_id``/``lottery_stage_id``, ``prune_run_id``,
``branch_run_id``, ``supermask_run_id``), so a run started from a study, a sweep of the command line
or the Python API is the same run. Computing it reads no data and builds no model.

A trial crosses process boundaries (to a worker process, a Ray task, a Slurm job) as plain data:
:meth:`Trial.to_data` and :meth:`Trial.from_data` (JSON-compatible; specs through their dict form).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prunelab.experiments.choices import MULTISHOT_ROUND_STEPS, MULTISHOT_ROUNDS, PRUNE_EXPERIMENTS
from prunelab.experiments.train import missing_steps, run_train, train_run_id
from prunelab.specs import ExperimentSpec, SpecError, from_dict, to_dict
from prunelab.specs.base import check_choice
from prunelab.store import RunStore

if TYPE_CHECKING:
    from prunelab.experiments.branch import OneShotBranch

# The other kinds' modules are imported where a trial of that kind needs them: a process that only
# trains (``prunelab train``) does not load the pruning, lottery and supermask machinery.

__all__ = ["KINDS", "KIND_ARGUMENTS", "Trial", "trial_run_id"]

KINDS = ("train", "lottery", "prune", "branch", "supermask")

#: The arguments each kind reads besides its spec; every other argument must keep its default.
KIND_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "train": (),
    "lottery": ("levels", "controls", "level", "control"),
    "prune": ("density", "experiment", "rounds", "round_steps"),
    "branch": ("parent", "branch"),
    "supermask": (),
}


@dataclass(frozen=True)
class Trial:
    """One run: ``kind`` with ``spec`` and the kind's arguments.

    - ``prune``: ``density`` (required), ``experiment`` (singleshot/multishot), ``rounds``/``round_steps``
      (multishot only).
    - ``lottery``: the whole lottery (``levels`` and ``controls``: its summary over every stage) or one
      stage of it (``level``, and ``control`` for one control of that level).
    - ``branch``: ``branch`` (a :class:`OneShotBranch`) of ``parent``, a run id; ``parent=None`` means the
      ``train`` run of ``spec``, which then is a prerequisite of the trial.
    - ``train``, ``supermask``: the spec alone.
    """

    kind: str
    spec: ExperimentSpec = field(default_factory=ExperimentSpec)
    density: float | None = None
    experiment: str = "singleshot"
    rounds: int | None = None
    round_steps: str | None = None
    levels: int | None = None
    controls: tuple[str, ...] = ()
    level: int | None = None
    control: str | None = None
    parent: str | None = None
    branch: OneShotBranch | None = None

    def __post_init__(self) -> None:
        check_choice(self.kind, KINDS, "kind")
        given = [
            f.name
            for f in dataclasses.fields(self)
            if f.name not in ("kind", "spec") and getattr(self, f.name) != _default(f)
        ]
        foreign = [name for name in given if name not in KIND_ARGUMENTS[self.kind]]
        if foreign:
            raise SpecError(
                f"a {self.kind} trial does not take {', '.join(foreign)}; it takes "
                f"{', '.join(KIND_ARGUMENTS[self.kind]) or 'only a spec'}"
            )
        object.__setattr__(self, "controls", tuple(self.controls))
        getattr(self, f"_check_{self.kind}", lambda: None)()

    def _check_prune(self) -> None:
        if self.density is None:
            raise SpecError("a prune trial needs a target density, e.g. density=0.1")
        object.__setattr__(self, "density", float(self.density))
        if not 0.0 < self.density <= 1.0:
            raise SpecError(f"target density {self.density} is outside (0, 1]")
        check_choice(self.experiment, PRUNE_EXPERIMENTS, "experiment")
        if self.experiment == "singleshot" and (self.rounds is not None or self.round_steps is not None):
            raise SpecError(
                "rounds and round_steps apply to experiment=multishot; drop them or set experiment=multishot"
            )
        if self.rounds is not None and self.rounds < 1:
            raise SpecError(f"rounds must be >= 1, got {self.rounds}")

    def _check_lottery(self) -> None:
        whole = self.levels is not None
        if whole == (self.level is not None):
            raise SpecError(
                "a lottery trial is either a whole lottery (levels, controls) or one stage of it (level, "
                "and control for one control of that level); give levels or level"
            )
        if self.levels is not None and self.levels < 0:
            raise SpecError(f"levels must be >= 0, got {self.levels}")
        if self.level is not None:
            if self.controls:
                raise SpecError("controls belong to a whole lottery; a stage trial takes one control=")
            if self.level < 0:
                raise SpecError(f"level must be >= 0, got {self.level}")
            if self.control is not None and self.level == 0:
                raise SpecError("controls are trained for the pruned levels (level >= 1), not the dense level 0")
        from prunelab.experiments.lottery import check_controls

        check_controls([*self.controls, *([self.control] if self.control else [])])

    def _check_branch(self) -> None:
        if self.branch is None:
            raise SpecError("a branch trial needs its branch arguments (a OneShotBranch)")

    # identity -----------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return trial_run_id(self)

    @property
    def parent_id(self) -> str:
        """A branch's parent run: ``parent``, or the ``train`` run of the spec."""
        return self.parent if self.parent is not None else train_run_id(self.spec)

    def multishot_rounds(self) -> tuple[int | None, str | None]:
        """``(rounds, round_steps)`` as they name the run: multishot's defaults filled in."""
        if self.experiment != "multishot":
            return self.rounds, self.round_steps
        return self._rounds_or_defaults()

    def _rounds_or_defaults(self) -> tuple[int, str]:
        return (
            MULTISHOT_ROUNDS if self.rounds is None else self.rounds,
            MULTISHOT_ROUND_STEPS if self.round_steps is None else self.round_steps,
        )

    def describe(self) -> str:
        """A short label: what distinguishes this trial from others of its kind and spec."""
        if self.kind == "prune":
            return f"{self.spec.prune.strategy} d={self.density:g}" + (
                " multishot" if self.experiment == "multishot" else ""
            )
        if self.kind == "lottery":
            if self.levels is not None:
                return f"lottery of {self.levels} levels" + (f" + {', '.join(self.controls)}" if self.controls else "")
            return f"level {self.level}" + (f" {self.control}" if self.control else "")
        if self.kind == "branch":
            assert self.branch is not None  # _check_branch
            return f"branch {self.branch.strategy} f={self.branch.prune_fraction:g}"
        if self.kind == "supermask":
            return f"{self.spec.supermask.method} d={self.spec.supermask.density:g}"
        return "train"

    # dependencies -------------------------------------------------------------------------------
    def needs(self) -> list[Trial]:
        """The trials that must be stored before this one runs (their own needs not included)."""
        if self.kind == "lottery":
            spec = self.spec
            if self.levels is not None:  # the whole lottery
                levels = [Trial("lottery", spec, level=level) for level in range(self.levels + 1)]
                controls = [
                    Trial("lottery", spec, level=level, control=name)
                    for level in range(1, self.levels + 1)
                    for name in self.controls
                ]
                return levels + controls
            assert self.level is not None  # _check_lottery: levels or level
            if self.control is not None:
                return [Trial("lottery", spec, level=self.level)]
            return [Trial("lottery", spec, level=self.level - 1)] if self.level > 0 else []
        if self.kind == "branch" and self.parent is None:
            return [Trial("train", self.spec)]
        return []

    def is_stored(self, store: RunStore) -> bool:
        """Whether the run has finished in ``store`` (a whole lottery: with all its levels and controls)."""
        run = store.run(self.run_id)
        if not run.finished:
            return False
        if self.kind == "lottery" and self.levels is not None:  # the whole lottery
            rows = {row["level"]: row for row in run.summary().get("levels", [])}
            return all(
                level in rows and (level == 0 or all(c in rows[level] for c in self.controls))
                for level in range(self.levels + 1)
            )
        if self.kind == "train" or (self.kind == "lottery" and self.level == 0 and self.control is None):
            # a train run (a lottery's level 0 is one) is stored once it holds every step asked for
            extra = (self.spec.prune.rewind,) if self.kind == "lottery" else ()
            return not missing_steps(run.summary(), self.spec, extra)
        return True

    def state(self, store: RunStore) -> str:
        """``stored``, ``partial`` (begun: a resumable checkpoint or finished stages) or ``missing``."""
        if self.is_stored(store):
            return "stored"
        return "partial" if store.run(self.run_id).path.is_dir() else "missing"

    # checks and execution -----------------------------------------------------------------------
    def check(self) -> None:
        """The checks that need neither data nor a model, so a study fails on a typo in its last trial
        before its first one trains. The kinds' run functions check the rest when they start."""
        if self.kind == "supermask":
            from prunelab.experiments.supermask import check_supermask_spec

            check_supermask_spec(self.spec)
        if self.kind in ("prune", "lottery"):
            from prunelab.experiments.scoring import split_strategy_name
            from prunelab.pruning.base import get_strategy

            get_strategy(split_strategy_name(self.spec.prune.strategy)[0])
        if self.kind == "prune" and self.spec.prune.count_rule != "exact":
            raise SpecError(
                f"prune.count_rule={self.spec.prune.count_rule} counts lottery levels; pruning to a "
                "density keeps round(d * n) weights, drop the setting"
            )

    def validate(self, store: RunStore | None = None) -> None:
        """The checks against the trial's model and data (:mod:`prunelab.experiments.validation`): every
        pattern, step and option, the device and the data files. Reads the data set (once per process)
        and builds the model on the meta device; trains nothing and writes nothing."""
        from prunelab.experiments import validation

        self.check()
        spec = self.spec
        if self.kind in ("train", "supermask"):
            validation.check_training(spec)
        elif self.kind == "lottery":
            validation.check_lottery(spec, self.levels, [*self.controls, *([self.control] if self.control else [])])
        elif self.kind == "prune":
            rounds, round_steps = self.multishot_rounds()
            validation.check_prune(spec, experiment=self.experiment, rounds=rounds, round_steps=round_steps)
        else:
            validation.check_branch(spec, self.branch, self.parent, store or RunStore())

    def run(self, store: RunStore | None = None, *, quiet: bool = False) -> dict[str, Any]:
        """Run the trial in ``store`` (or return its stored result); returns the run's summary. ``quiet``
        turns the trial's own progress bar off (it does not change the run)."""
        store = store or RunStore()
        spec = self.spec
        if quiet:
            spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, progress=False))
        if self.kind == "train":
            return run_train(spec, store=store)
        if self.kind == "supermask":
            from prunelab.experiments.supermask import run_supermask

            return run_supermask(spec, store=store)
        if self.kind == "prune":
            from prunelab.experiments.prune_init import run_prune

            assert self.density is not None  # _check_prune
            rounds, round_steps = self._rounds_or_defaults()  # a singleshot run ignores them
            return run_prune(
                spec, self.density, experiment=self.experiment, rounds=rounds, round_steps=round_steps, store=store
            )
        if self.kind == "lottery":
            from prunelab.experiments.lottery import run_lottery, run_lottery_stage

            if self.levels is not None:
                return run_lottery(spec, self.levels, controls=self.controls, store=store)
            assert self.level is not None  # _check_lottery: levels or level
            return run_lottery_stage(spec, self.level, self.control, store=store)
        from prunelab.experiments.branch import run_oneshot_branch

        assert self.branch is not None  # _check_branch
        if self.parent is None:  # the parent is this spec's train run: train it first (at once if stored)
            run_train(spec, store=store)
        return run_oneshot_branch(self.parent_id, self.branch, store=store)

    # plain data ---------------------------------------------------------------------------------
    def to_data(self) -> dict[str, Any]:
        """The trial as JSON-compatible data: the kind, the full spec, the arguments that differ from
        their defaults."""
        data: dict[str, Any] = {"kind": self.kind, "spec": to_dict(self.spec)}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("kind", "spec") or value == _default(f):
                continue
            if f.name == "branch":  # a OneShotBranch
                value = to_dict(value)
            data[f.name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Trial:
        data = dict(data)
        spec = from_dict(ExperimentSpec, data.pop("spec", {}))
        if data.get("branch") is not None:
            from prunelab.experiments.branch import OneShotBranch

            data["branch"] = from_dict(OneShotBranch, data["branch"], where="branch")
        if "controls" in data:
            data["controls"] = tuple(data["controls"])
        return cls(spec=spec, **data)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"field {f.name} has no default")


def trial_run_id(trial: Trial) -> str:
    """The run id of ``trial``: the one naming rule of each kind (existing run ids never change)."""
    spec = trial.spec
    if trial.kind == "train":
        return train_run_id(spec)
    if trial.kind == "supermask":
        from prunelab.experiments.supermask import supermask_run_id

        return supermask_run_id(spec)
    if trial.kind == "prune":
        from prunelab.experiments.prune_init import prune_run_id

        assert trial.density is not None
        rounds, round_steps = trial.multishot_rounds()
        return prune_run_id(spec, trial.density, trial.experiment, rounds, round_steps)  # type: ignore[arg-type]
    if trial.kind == "lottery":
        from prunelab.experiments.lottery import lottery_run_id, lottery_stage_id

        return lottery_run_id(spec) if trial.level is None else lottery_stage_id(spec, trial.level, trial.control)
    from prunelab.experiments.branch import branch_run_id

    assert trial.branch is not None
    return branch_run_id(trial.parent_id, trial.branch)
