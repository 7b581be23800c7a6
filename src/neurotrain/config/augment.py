"""``data.augment``: augmentation of the training batches that keeps the stimulus-response mapping.

``translate_px`` (0 = no augmentation): every training sample's stimulus is translated by a random whole number of
pixels, drawn uniformly from ``-translate_px .. translate_px`` for rows and columns independently, and the readout
follows the translation (a Gaussian readout moves its means, a factorized readout its masks by the same amount in
feature-map pixels), so that the translated stimulus still predicts the recorded response. ``pad``: what fills the
uncovered border: ``grey`` (the stimulus' mid-grey, 0 after normalisation) or ``edge`` (the nearest edge pixel).

The draws depend only on ``(seed, epoch, batch, sub-batch)``, so a resumed run draws exactly what the uninterrupted
run drew (:mod:`neurotrain.training.augment`). Validation, evaluation and predictions never see translations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from neurotrain.config.typed import ConfigError


@dataclass
class AugmentConfig:
    translate_px: int = 0
    pad: Literal["grey", "edge"] = "grey"

    def check(self, file, prefix):
        if self.translate_px < 0:
            raise ConfigError(file, f"{prefix}.translate_px", f"must be >= 0 (0 = no augmentation), got "
                                                              f"{self.translate_px}")

    @property
    def enabled(self) -> bool:
        return self.translate_px > 0
