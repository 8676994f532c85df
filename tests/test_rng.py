"""Random streams: a draw happens on its generator's device (else on the target's) and lands where it is used."""

import pytest
import torch

from straightflow import rng
from straightflow.methods.guidance import drop_labels
from straightflow.methods.mean_flow import sample_interval_times
from straightflow.methods.time_sampling import GridTime, LogitNormalTime, UniformTime

# "meta" stands in for an accelerator on any machine: a tensor there has a device and no data. torch does not
# check a generator against a meta draw (it would against a CUDA one), so the tests below check that the
# generator itself made the draw: its state advanced.
META = torch.device("meta")
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
DRAWS = {
    "rand": lambda g, device: rng.rand((3, 2), g, device),
    "randn": lambda g, device: rng.randn(5, g, device),
    "randint": lambda g, device: rng.randint(7, 4, g, device),
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _drawn_by_generator(draw) -> bool:
    """Whether draw(g) (a function of a fresh CPU generator g) drew its numbers from g."""
    g = _gen()
    before = g.get_state()
    draw(g)
    return not torch.equal(before, g.get_state())


@pytest.mark.parametrize("name", DRAWS)
def test_a_draw_without_a_generator_happens_on_the_target_device(name):
    assert DRAWS[name](None, META).device == META
    assert DRAWS[name](None, None).device.type == "cpu"


@pytest.mark.parametrize("name", DRAWS)
def test_a_draw_with_a_generator_follows_it_and_is_delivered_to_the_target_device(name):
    assert DRAWS[name](_gen(), None).device.type == "cpu"  # no target: stays where the generator drew it
    assert DRAWS[name](_gen(), META).device == META
    assert _drawn_by_generator(lambda g: DRAWS[name](g, META))


def test_cpu_draws_are_the_numbers_of_torchs_own_calls():
    # CPU runs (and their bit-exact resume) keep their numbers through the helpers.
    assert torch.equal(rng.rand((3, 2), _gen(4)), torch.rand(3, 2, generator=_gen(4)))
    f64 = torch.float64
    assert torch.equal(rng.randn(5, _gen(4), "cpu", f64), torch.randn(5, generator=_gen(4), dtype=f64))
    assert torch.equal(rng.randint(7, 4, _gen(4)), torch.randint(0, 7, (4,), generator=_gen(4)))


@pytest.mark.parametrize("device", DEVICES)
def test_step_generators_live_on_the_asked_device_and_differ_by_seed_step_stream_and_rank(device):
    def first(*key):
        return torch.rand(8, generator=rng.step_generator(*key, device=device), device=device)

    assert rng.step_generator(0, 5, 1, 2, device).device.type == device
    assert torch.equal(first(0, 5, 1, 2), first(0, 5, 1, 2))
    draws = [first(0, 5, 1, 2), first(1, 5, 1, 2), first(0, 6, 1, 2), first(0, 5, 0, 2), first(0, 5, 1, 3)]
    assert all(not torch.equal(a, b) for i, a in enumerate(draws) for b in draws[i + 1:])


@pytest.mark.parametrize("sampler", [UniformTime(), LogitNormalTime(), GridTime(4)], ids=type)
def test_time_samplers_deliver_on_the_target_device_with_or_without_a_generator(sampler):
    assert sampler.sample(6, None, device=META).device == META
    assert sampler.sample(6, _gen(), device=META).device == META
    assert _drawn_by_generator(lambda g: sampler.sample(6, g, device=META))


def test_interval_times_deliver_on_the_target_device_and_every_draw_comes_from_the_generator():
    g = _gen()
    s, t = sample_interval_times(6, 0.5, UniformTime(), g, device=META)
    assert s.device == t.device == META
    same = _gen()
    for _ in range(3):  # two times per row and the s != t coin, all from the generator's stream
        torch.rand(6, generator=same)
    assert torch.equal(g.get_state(), same.get_state())


def test_label_dropout_works_with_the_generator_on_another_device_than_the_labels():
    assert drop_labels(torch.zeros(8, dtype=torch.long, device=META), 0.5, 3, _gen()).device == META
    assert _drawn_by_generator(lambda g: drop_labels(torch.zeros(8, dtype=torch.long, device=META), 0.5, 3, g))
    label = torch.arange(3).repeat(4)
    assert torch.equal(drop_labels(label, 1.0, 3, _gen()), torch.full_like(label, 3))
    assert torch.equal(drop_labels(label, 0.0, 3, _gen()), label)
