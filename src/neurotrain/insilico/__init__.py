"""In-silico experiments on trained twins (and on the synthetic V1's ground truth): MEIs, gratings, receptive
fields by white-noise reverse correlation, size tuning and contrast response.

    from neurotrain.insilico import open_target, run_experiment, run_insilico
    rep, target = run_insilico("runs/demo/checkpoints/last", "gratings", session="monkeyA_2024-01-01",
                               neurons="0-7", out_dir="insilico/gratings")

Stimuli are in the model convention ``(B, C, L, H, W)``, normalised ``(pixel - 127) / 255``, lag 0 = newest frame
(:mod:`neurotrain.insilico.stimuli`). Modules: ``target`` (what is probed), ``stimuli``, ``mei``, ``gratings``,
``rf``, ``tuning`` (size, contrast), ``fitting`` (batched curve fits), ``groundtruth`` (the synthetic V1 as a
differentiable model), ``figures``, ``experiments`` (by name, with outputs), ``validation`` (twin vs truth).
"""

from neurotrain.insilico.experiments import EXPERIMENTS, Report, run_experiment, run_insilico, write_report
from neurotrain.insilico.gratings import GratingSettings, run_gratings
from neurotrain.insilico.mei import MEISettings, run_mei
from neurotrain.insilico.rf import RFSettings, gradient_maps, run_rf
from neurotrain.insilico.target import (GroundTruthTarget, InsilicoError, ModelTarget, Target, open_target,
                                        parse_neurons)
from neurotrain.insilico.tuning import Preferred, TuningSettings, run_contrast, run_size

__all__ = ["EXPERIMENTS", "Report", "run_experiment", "run_insilico", "write_report", "GratingSettings",
           "run_gratings", "MEISettings", "run_mei", "RFSettings", "gradient_maps", "run_rf", "GroundTruthTarget",
           "InsilicoError", "ModelTarget", "Target", "open_target", "parse_neurons", "Preferred", "TuningSettings",
           "run_contrast", "run_size"]
