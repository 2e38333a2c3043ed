"""fk_core/sampler_choice.py without a host: a sampler's randomness is measured on the stand-in model, and a
deterministic choice runs as its stochastic sibling or is refused saying what to pick (every sampler of a real
host: test_all_samplers.py)."""

from __future__ import annotations

import pytest
import torch

from fk_core import FKError, SamplerChoice, choose_stochastic, draws_noise
from fk_core.sampler_choice import STOCHASTIC_SIBLING, ProbeModel

SIGMAS = torch.tensor([14.6, 2.0, 0.3, 0.0])


def deterministic(model, x, sigmas, extra_args=None, callback=None, disable=None):
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i] * x.new_ones(1), **extra_args)
    return x


def ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None):
    generator = torch.Generator().manual_seed(extra_args["seed"])
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i] * x.new_ones(1), **extra_args) + sigmas[i + 1] * torch.randn(x.shape,
                                                                                           generator=generator)
    return x


def test_draws_noise_tells_a_random_sampler_from_a_deterministic_one():
    assert draws_noise(ancestral, None, SIGMAS) == (True, None)
    assert draws_noise(deterministic, None, SIGMAS) == (False, None)


def test_a_sampler_the_stand_in_cannot_run_is_named_with_its_error():
    def needs_more(model, x, sigmas, **kwargs):
        raise KeyError("transformer_options")

    assert draws_noise(needs_more, None, SIGMAS) == (False, "KeyError: 'transformer_options'")


def test_the_stand_in_runs_post_cfg_functions_as_cfg_would():
    seen = []
    model = ProbeModel(model_sampling="ms")
    out = model(torch.ones(1, 4, 4, 4), torch.ones(1),
                model_options={"sampler_post_cfg_function": [lambda args: seen.append(args) or args["denoised"]]})
    assert torch.equal(out, torch.full((1, 4, 4, 4), 0.5)) and seen[0]["uncond_denoised"] is not None
    assert model.inner_model.model_patcher.get_model_object("model_sampling") == "ms"


def probe_of(stochastic: set, broken: dict | None = None):
    return lambda name: (name in stochastic, (broken or {}).get(name))


def test_choice_keeps_a_stochastic_sampler_and_swaps_a_deterministic_one():
    names = ["euler", "euler_ancestral", "my_sampler", "my_sampler_sde"]
    probe = probe_of({"euler_ancestral", "my_sampler_sde"})
    assert choose_stochastic("euler_ancestral", names, probe) == SamplerChoice("euler_ancestral", "euler_ancestral",
                                                                               None)
    swapped = choose_stochastic("euler", names, probe, "N")
    assert (swapped.used, STOCHASTIC_SIBLING["euler"]) == ("euler_ancestral", "euler_ancestral")
    assert "deterministic" in swapped.note and "'euler_ancestral'" in swapped.note
    assert choose_stochastic("my_sampler", names, probe).used == "my_sampler_sde"  # the generic <name>_sde rule


def test_choice_refuses_with_what_to_pick():
    names = ["euler", "lonely", "odd"]
    probe = probe_of(set(), {"odd": "KeyError: 'x'"})
    with pytest.raises(FKError, match=r"^N: sampler_name 'nope' is not a sampler of this ComfyUI; choose one of"):
        choose_stochastic("nope", names, probe, "N")
    with pytest.raises(FKError, match=r"'lonely' is deterministic .* no stochastic sibling here; Pick a stochastic"):
        choose_stochastic("lonely", names, probe, "N")
    with pytest.raises(FKError, match=r"'euler' is deterministic"):  # its table sibling is not on this host
        choose_stochastic("euler", names, probe, "N")
    with pytest.raises(FKError, match=r"'odd' could not be checked for random noise \(KeyError: 'x'\)"):
        choose_stochastic("odd", names, probe, "N")
