"""Programmatic fine-tuning: load a trained twin, add sessions, freeze parts, train, evaluate, save.

    from neurotrain.finetune import Twin

    twin = Twin.from_pretrained("runs/v4/best")               # a portable folder or a legacy .ckpt
    twin.add_sessions(["runs/data/cowley_v4_56/cowley_v4_210621"])   # new adapter + readout each
    twin.freeze("core")                                         # frontend, convnet, modulator, recurrent
    twin.fit(["cowley_v4_210621"], output_dir="runs/ft", train={"max_epochs": 10, "lr": 3e-3},
             unfreeze_at={"core": 8})                           # optional: fine-tune the core at the end
    print(twin.evaluate(["cowley_v4_210621"])["val_corr_overall"])
    twin.save_pretrained("runs/ft/model")

Everything runs through the same training loop as ``neurotrain train`` (:func:`neurotrain.run.train.train`):
``fit`` writes a recipe into ``output_dir`` and trains a *view* of the twin holding only the sessions it
fits (sharing every module with the twin, so the twin is what gets trained). A session's readout bias
starts from its training-split mean rate the first time it is fitted and is never reset afterwards.

Sessions are session folders (``neurotrain ingest``); a twin knows the folder of every session added to it
or fitted by it, and ``fit``/``evaluate`` accept either such names or folders.

An ensemble folder (:mod:`neurotrain.checkpoint.ensemble`) loads as a twin of an
:class:`~neurotrain.checkpoint.ensemble.Ensemble`: ``add_sessions`` gives every member its own fresh adapter and
readout, ``freeze``/``unfreeze`` act on every member, ``fit`` trains the members one after another (member k in
``output_dir/member_k`` with ``seed + k``; for an ensemble ``by: kfold``, without fold k of the new data's
training split) and returns the ensemble's validation metrics with each member's result under ``members``;
``evaluate`` scores the mean of the members' rates and ``save_pretrained`` writes an ensemble folder.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Iterable

import torch
import yaml
from accelerate import Accelerator

from neurotrain.checkpoint.ensemble import Ensemble, member_folder
from neurotrain.config.recipe import load_recipe
from neurotrain.data.session import Session
from neurotrain.model import build_model
from neurotrain.model import components as parts
from neurotrain.run.train import train
from neurotrain.sources import build_data, from_pretrained
from neurotrain.training.loss import session_losses
from neurotrain.training.validation import run_validation

_FIT_DEFAULTS = {
    "seed": 0,
    "data": {"val_fraction": 0.2, "split_seed": 0, "batch_size": 64, "num_workers": 0},
    "train": {"max_epochs": 10, "lr": 3e-3, "weight_decay": 1e-4, "lr_scheduler": "cosine_warmup",
              "warmup_epochs": 1},
    "checkpoint": {"save_top_k": 1, "every_n_steps": 0, "resume": "never"},
    "logging": {"wandb": False, "progress_bar": False},
}


class Twin:
    """A multi-session model plus its session registry (one dict per readout, in readout order)."""

    def __init__(self, model: torch.nn.Module, sessions: list[dict], meta: dict | None = None):
        if len(sessions) != model.n_sessions:
            raise ValueError(f"{len(sessions)} session entries for a model with {model.n_sessions} readouts")
        self.model = model
        self.sessions = [dict(s) for s in sessions]
        self.meta = dict(meta or {})

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, path: str | Path, **legacy_kwargs) -> "Twin":
        """Load a portable folder, or a legacy Lightning ``.ckpt`` (``legacy_kwargs``: ``model_config``,
        ``dataset_configs``, ``input_shape``, see :func:`neurotrain.legacy.convert.load_legacy_checkpoint`)."""
        model, meta = from_pretrained(path, **legacy_kwargs)
        return cls(model, meta["sessions"], meta)

    def save_pretrained(self, folder: str | Path, metrics: dict | None = None, **extra) -> Path:
        """Write the portable folder (weights, config, session registry, model card); an ensemble twin writes an
        ensemble folder (one portable folder per member)."""
        from neurotrain.checkpoint.ensemble import save_ensemble
        from neurotrain.checkpoint.portable import save_portable

        if self.is_ensemble:
            manifest = self.meta.get("ensemble") or {}
            old = manifest.get("members") or [{} for _ in self.model.members]
            info = [{k: v for k, v in e.items() if k in ("seed", "kfold", "source")} for e in old]
            for k, r in enumerate(self.meta.get("member_metrics") or []):
                info[k]["metrics"] = r
            return save_ensemble(self.model, folder, sessions=self.sessions, by=manifest.get("by", "given"),
                                 member_info=info, metrics=metrics or self.meta.get("metrics") or {}, extra=extra or None)
        return save_portable(self.model, folder, model_config=self.model.config, sessions=self.sessions,
                             metrics=metrics or self.meta.get("metrics") or {}, extra=extra or None)

    @property
    def names(self) -> list[str]:
        return [s["name"] for s in self.sessions]

    @property
    def is_ensemble(self) -> bool:
        return isinstance(self.model, Ensemble)

    @property
    def members(self) -> list[torch.nn.Module]:
        """The models trained by ``fit``: the ensemble's members, or the one model."""
        return list(self.model.members) if self.is_ensemble else [self.model]

    # ------------------------------------------------------------------ sessions
    def add_sessions(self, folders: Iterable[str | Path], overrides: list[dict | None] | None = None) -> list[int]:
        """Add a fresh adapter and readout (built from the twin's model config) for each session folder.
        Returns the new sessions' indices. The new readouts' biases are set from the mean rates when
        they are first fitted."""
        folders = [Path(f) for f in folders]
        opened = [Session.open(f) for f in folders]
        for s in opened:
            if s.name in self.names:
                raise ValueError(f"session {s.name} ({s.path}) is already in the twin")
        start = self.model.n_sessions
        for model in self.members:  # every member of an ensemble gets its own fresh adapter and readout
            shape = getattr(model, "input_shape", None)
            fresh = build_model(model.config, [s.n_neurons for s in opened], overrides,
                                input_shape=tuple(shape) if shape else None)
            for i in range(len(opened)):
                model.adapters.append(fresh.adapters[i])
                model.readouts.append(fresh.readouts[i])
                if model.spike_history is not None:
                    model.spike_history.append(fresh.spike_history[i])
                if model.baselines is not None:
                    model.baselines.append(fresh.baselines[i])
        if self.is_ensemble:
            self.model.response_types += [s.response_type for s in opened]
        for s, f in zip(opened, folders):
            self.sessions.append({"name": s.name, "subject": s.subject, "n_neurons": int(s.n_neurons),
                                  "path": str(f), "fitted": False})
        return list(range(start, self.model.n_sessions))

    def _resolve(self, sessions) -> list[int]:
        if sessions is None:
            return list(range(len(self.sessions)))
        out = []
        for s in sessions:
            p = Path(str(s))
            name = Session.open(p).name if p.is_dir() else str(s)
            if name not in self.names:
                raise KeyError(f"session {s!r} is not in the twin (sessions: {self.names}); add_sessions() first")
            i = self.names.index(name)
            if p.is_dir():
                self.sessions[i]["path"] = str(p)
            if not self.sessions[i].get("path"):
                raise KeyError(f"session {name}: its folder is unknown; pass the folder instead of the name")
            out.append(i)
        return out

    # ------------------------------------------------------------------ freezing
    def freeze(self, *components: str) -> int:
        """Freeze components (``core``, ``vision``, ``frontend``, ``convnet``, ``modulator``, ``recurrent``,
        ``adapters``, ``readouts``), in every member of an ensemble; returns the number of parameters frozen."""
        return sum(parts.freeze(m, components) for m in self.members)

    def unfreeze(self, *components: str) -> int:
        return sum(parts.unfreeze(m, components) for m in self.members)

    @property
    def frozen(self) -> tuple[str, ...]:
        return parts.frozen_components(self.members[0])

    # ------------------------------------------------------------------ training and evaluation
    def _recipe(self, indices, output_dir, holdout_sessions, sections: dict, model_config: dict | None = None) -> Path:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model_yaml = out / "model.yaml"
        model_yaml.write_text(yaml.safe_dump(model_config or self.model.config, sort_keys=False))
        recipe = copy.deepcopy(_FIT_DEFAULTS)
        # one stimulus window and behaviour layout for the whole core: take them from a trained session
        first = next((s for s in self.sessions if s.get("lags")), self.sessions[indices[0]])
        lags = first.get("lags")
        recipe["output_dir"] = str(out.resolve())
        recipe["data"].update({"sessions": [str(Path(self.sessions[i]["path"]).resolve()) for i in indices]})
        if lags:
            recipe["data"]["lags"] = list(lags)
        if first.get("behavior_dim") is not None:
            recipe["data"]["use_behavior"] = bool(first.get("behavior_dim"))
        if holdout_sessions:
            recipe["data"]["holdout_sessions"] = [str(Path(p).resolve()) for p in holdout_sessions]
        recipe["model"] = {"config": str(model_yaml.resolve())}
        for section, values in sections.items():
            if isinstance(values, dict):
                recipe.setdefault(section, {}).update(values)
            elif values is not None:
                recipe[section] = values
        path = out / "finetune_recipe.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return path

    def fit(self, sessions=None, *, output_dir: str | Path, unfreeze_at: dict | None = None,
            holdout_sessions: list | None = None, hooks: list = (), **sections) -> dict:
        """Train the twin on ``sessions`` (names or folders; default all) with the usual loop.

        ``sections`` update the recipe sections (``data``, ``train``, ``checkpoint``, ``logging``, ``seed``);
        ``unfreeze_at`` maps frozen components to the epoch at which they start training;
        ``holdout_sessions`` (folders) only shape the split: their validation stimuli leave this fit's
        training data. ``hooks``: extra :class:`~neurotrain.training.hooks.Hook` objects for the loop.
        Returns the loop's final metrics (validation on the fitted sessions).
        """
        idx = self._resolve(sessions)
        if self.is_ensemble:
            return self._fit_ensemble(idx, output_dir, unfreeze_at, holdout_sessions, hooks, sections)
        if unfreeze_at:
            sections.setdefault("model", {})
        path = self._recipe(idx, output_dir, holdout_sessions, {k: v for k, v in sections.items() if k != "model"})
        recipe = load_recipe(path)
        if unfreeze_at:
            recipe.model.unfreeze_at = dict(unfreeze_at)
        view = self.model.select_sessions(idx)
        fitted = {j for j, i in enumerate(idx) if self.sessions[i].get("fitted", True)}
        result = train(recipe, model=view, initialized_readouts=fitted, hooks=list(hooks))
        for attr in ("_neurotrain_frozen", "_neurotrain_frozen_ids"):  # the view may have unfrozen parts
            if hasattr(view, attr):
                setattr(self.model, attr, getattr(view, attr))
        for j, i in enumerate(idx):
            entry = dict(result["sessions"][j])
            entry["fitted"] = True
            self.sessions[i].update(entry)
        self.meta["metrics"] = {k: v for k, v in result.items() if k.startswith("val_")}
        return result

    def _fit_ensemble(self, idx: list[int], output_dir, unfreeze_at, holdout_sessions, hooks, sections: dict) -> dict:
        """``fit`` for an ensemble twin: each member in turn (``output_dir/member_k``, ``seed + k``; the fold k of a
        k-fold ensemble), then the ensemble's validation metrics on the fitted sessions."""
        manifest = self.meta.get("ensemble") or {}
        kfold = manifest.get("by") == "kfold"
        fitted = {j for j, i in enumerate(idx) if self.sessions[i].get("fitted", True)}
        base_seed = int(sections.get("seed", _FIT_DEFAULTS["seed"]))
        results = []
        for k, member in enumerate(self.model.members):
            secs = {key: (dict(v) if isinstance(v, dict) else v) for key, v in sections.items() if key != "model"}
            secs["seed"] = base_seed + k
            if kfold:
                secs["data"] = {**secs.get("data", {}), "kfold": self.model.n_members, "kfold_index": k}
            path = self._recipe(idx, Path(output_dir) / member_folder(k), holdout_sessions, secs,
                                model_config=member.config)
            recipe = load_recipe(path)
            if unfreeze_at:
                recipe.model.unfreeze_at = dict(unfreeze_at)
            view = member.select_sessions(idx)
            results.append(train(recipe, model=view, initialized_readouts=fitted, hooks=list(hooks)))
            for attr in ("_neurotrain_frozen", "_neurotrain_frozen_ids"):
                if hasattr(view, attr):
                    setattr(member, attr, getattr(view, attr))
        for j, i in enumerate(idx):
            self.sessions[i].update({**results[0]["sessions"][j], "fitted": True})
        data_secs = {key: v for key, v in sections.items() if key in ("data", "seed")}
        metrics = self.evaluate([self.names[i] for i in idx], holdout_sessions=holdout_sessions, **data_secs)
        self.meta["metrics"] = {k: v for k, v in metrics.items() if k.startswith("val_")}
        self.meta["member_metrics"] = [{k: v for k, v in r.items() if k.startswith("val_") and "/" not in k}
                                       for r in results]
        return {**metrics, "members": results, "output_dir": str(output_dir)}

    @torch.no_grad()
    def evaluate(self, sessions=None, *, output_dir: str | Path | None = None, holdout_sessions: list | None = None,
                 **sections) -> dict:
        """Validation metrics of ``sessions`` (same splits as ``fit`` with the same data settings)."""
        idx = self._resolve(sessions)
        with tempfile.TemporaryDirectory() as tmp:
            recipe = load_recipe(self._recipe(idx, output_dir or tmp, holdout_sessions, sections))
            data = build_data(recipe, history_lags=self.model.history_lags)
            view = self.model.select_sessions(idx)
            was = view.training
            view.eval()
            acc = Accelerator(cpu=not torch.cuda.is_available())
            out = run_validation(view.to(acc.device), acc, data, recipe.data.val_batch_size or recipe.data.batch_size,
                                 session_losses(data.registry, view.log_input), with_oracle=True)
            view.train(was)
        return out
