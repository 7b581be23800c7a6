"""The training data path, as far as a CPU can check it: pinned memory and non-blocking copies are chosen when
there is a GPU, and stimuli reach the device as uint8 (cast and normalised there)."""

import pytest
import torch

from neurotrain.config import load_recipe
from neurotrain.run.setup import loader_options, setup_accelerator, setup_sampler
from neurotrain.sources import build_data
from tests.helpers.tiny import tiny_recipe


def test_pinned_memory_and_non_blocking_copies_only_with_a_gpu():
    assert loader_options(0, cuda=True) == {"num_workers": 0, "persistent_workers": False, "pin_memory": True}
    assert loader_options(2, cuda=False) == {"num_workers": 2, "persistent_workers": True, "pin_memory": False}


def test_the_accelerator_copies_non_blocking_exactly_when_cuda_is_there(tmp_path):
    acc = setup_accelerator(load_recipe(tiny_recipe(tmp_path)))
    assert acc.dataloader_config.non_blocking is torch.cuda.is_available()


def test_stimuli_stay_uint8_until_the_model_casts_them(tmp_path):
    recipe = load_recipe(tiny_recipe(tmp_path, data={"synthetic": {"n_sessions": 2, "seed": 0, "n_trials": 6,
                                                                    "trial_frames": 60, "neurons": [3, 4]}}))
    data = build_data(recipe)
    acc = setup_accelerator(recipe)
    _, loader = setup_sampler(recipe, data, 1)
    batch = next(iter(acc.prepare(loader)))
    (sub,) = batch
    assert sub["stim"].dtype == torch.uint8 and sub["stim"].device == acc.device
    assert loader.pin_memory is torch.cuda.is_available()


@pytest.mark.parametrize("world", [2])
def test_preemption_is_agreed_only_every_n_steps_on_several_ranks(world):
    """On N > 1 ranks the signal flag is all-reduced (a host sync) only every EVERY_N_STEPS optimizer steps."""
    from neurotrain.training.preemption import Preemption

    class Acc:
        num_processes = world
        device = torch.device("cpu")
        calls = 0

        def reduce(self, t, op):
            Acc.calls += 1
            return t

    p, acc = Preemption(), Acc()
    try:
        p.signal = 10
        assert [p.agreed(acc, s) for s in range(1, 21)] == [s % Preemption.EVERY_N_STEPS == 0 for s in range(1, 21)]
        assert Acc.calls == 2
    finally:
        p.restore()
