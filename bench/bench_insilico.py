"""In-silico speed: MEIs of many neurons against the bare forward + backward rate of the same model.

Prints one JSON object (all results) and a table of goals.

    python bench/bench_insilico.py --quick                 # demo twin, 100 neurons, a few steps (CPU: ~1 min)
    python bench/bench_insilico.py --canonical             # also the canonical twin at full size (GPU)

*mei*: :func:`neurotrain.insilico.mei.run_mei` on a :class:`~neurotrain.insilico.target.ModelTarget` (behaviour
zeros), ``--neurons`` neurons x ``--seeds`` seeds in one batch, ``--steps`` steps, timed end to end (including the
final evaluation of every seed, the choice of the best and the centre fit). samples/s = ``steps * neurons * seeds``
forward + backward samples / seconds.

*bare*: the same model, the same batch of random stimuli ``(neurons * seeds, C, L, H, W)`` with ``requires_grad``,
``model(x, 0, behavior)`` -> gather each sample's neuron -> ``sum().backward()`` in a plain loop (no optimiser, no
preconditioning, no budget): the bound a gradient-ascent MEI cannot beat. samples/s likewise.

Models (random weights: speed does not depend on training): ``demo``, ``recipes/models/demo_twin.yaml`` at the
demo's input ``(1, 14, 24, 24)`` with one session of ``--neurons`` neurons; ``canonical``,
``recipes/models/learned_resnet_concat_convgru_gaussian.yaml`` at ``(1, 25, 51, 51)`` (its legacy input; 42-D
behaviour). Each is measured ``--repeats`` times, mei and bare interleaved, the fastest of each kept.
Goal: mei / bare >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "demo": (REPO / "recipes" / "models" / "demo_twin.yaml", (1, 14, 24, 24)),
    "canonical": (REPO / "recipes" / "models" / "learned_resnet_concat_convgru_gaussian.yaml", (1, 25, 51, 51)),
}


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _target(name: str, n: int, dev):
    from neurotrain.insilico.target import ModelTarget
    from neurotrain.model import build_model

    path, shape = MODELS[name]
    cfg = yaml.safe_load(path.read_text())
    torch.manual_seed(0)
    model = build_model(cfg, [n], input_shape=shape).eval()
    mod = getattr(model, "modulator", None)
    dim = int(getattr(mod, "behavior_dim", 0) or 0) if mod is not None else 0
    beh = torch.zeros(dim) if dim else None
    return ModelTarget(model, 0, range(n), shape, behavior=beh, device=dev, label=name)


def bare_rate(target, batch: int, steps: int, warmup: int = 2) -> float:
    dev = target.device
    x = (torch.randn(batch, *target.input_shape, device=dev) * 0.15).requires_grad_(True)
    unit = (torch.arange(batch, device=dev) % target.n)[:, None]
    with target.frozen(), torch.enable_grad():
        for i in range(warmup + steps):
            if i == warmup:
                _sync(dev)
                t0 = time.perf_counter()
            r = target.rates(x)
            x.grad = None
            r.gather(1, unit).sum().backward()
        _sync(dev)
    return batch * steps / (time.perf_counter() - t0)


def mei_rate(target, seeds: int, steps: int) -> tuple[float, float]:
    from neurotrain.insilico.mei import MEISettings, run_mei

    st = MEISettings(steps=steps, seeds=seeds, batch_size=target.n * seeds)
    run_mei(target, MEISettings(steps=2, seeds=seeds, batch_size=target.n * seeds))  # warm-up
    _sync(target.device)
    t0 = time.perf_counter()
    res = run_mei(target, st)
    _sync(target.device)
    dt = time.perf_counter() - t0
    return res.evaluations / dt, dt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="MEI speed vs the bare forward + backward rate")
    p.add_argument("--quick", action="store_true", help="few steps (CPU smoke run)")
    p.add_argument("--canonical", action="store_true", help="also the canonical twin at full size")
    p.add_argument("--neurons", type=int, default=100)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="MEI steps (default 10 quick, 100 otherwise)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    from neurotrain.insilico.target import resolve_device

    dev = resolve_device(a.device)
    steps = a.steps or (10 if a.quick else 100)
    names = ["demo"] + (["canonical"] if a.canonical else [])
    results = {"device": str(dev), "threads": torch.get_num_threads(), "neurons": a.neurons, "seeds": a.seeds,
               "steps": steps, "models": {}}
    for name in names:
        t = _target(name, a.neurons, dev)
        batch = a.neurons * a.seeds
        bare, mei, secs = [], [], []
        for _ in range(a.repeats):
            bare.append(bare_rate(t, batch, steps))
            r, s = mei_rate(t, a.seeds, steps)
            mei.append(r)
            secs.append(s)
        results["models"][name] = {"input_shape": list(t.input_shape), "batch": batch, "bare_samples_per_s": max(bare),
                                   "mei_samples_per_s": max(mei), "ratio": max(mei) / max(bare),
                                   "mei_seconds": min(secs), "all_bare": bare, "all_mei": mei}
        del t
    print(json.dumps(results, indent=1))
    print()
    print(f"| model | input | batch | bare fwd+bwd samples/s | MEI samples/s | MEI / bare | goal |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results["models"].items():
        ok = "met" if r["ratio"] >= 0.9 else "missed"
        print(f"| {name} | {'x'.join(map(str, r['input_shape']))} | {r['batch']} | {r['bare_samples_per_s']:.0f} | "
              f"{r['mei_samples_per_s']:.0f} | {r['ratio']:.3f} | >= 0.9 ({ok}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
