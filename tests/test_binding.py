"""Inputs bound to forward by name, outputs named after what forward returns."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from nnkit.binding import BoundModule, Default, bind_inputs, output_leaves, select_outputs
from nnkit.errors import SpecError
from nnkit.resolve import resolve_object
from nnkit.spec import Dim, TensorSpec, ValueRange


class CacheFirst(nn.Module):
    """GPT-2's shape of signature: a cache argument sits between the ids and the mask."""

    def forward(self, input_ids, past_key_values=None, attention_mask=None, use_cache=None):
        assert past_key_values is None, "the mask landed in the cache argument"
        return input_ids.float() * attention_mask.float()


class PositionalOnly(nn.Module):
    def forward(self, a, b=None, /, *, scale=2.0):
        return a * scale if b is None else a + b


class Star(nn.Module):
    def forward(self, first, *rest):
        return first + sum(rest)


class Kwargs(nn.Module):
    def forward(self, x, **extra):
        return x + extra["bias"]


def call(module: nn.Module, binding, tensors):
    args, kwargs = binding.arguments(tensors)
    return module(*args, **kwargs)


def test_inputs_go_to_the_parameters_they_name_not_by_position():
    binding = bind_inputs(CacheFirst(), ["input_ids", "attention_mask"], model="m")
    assert binding.keywords == ("input_ids", "attention_mask")
    ids, mask = torch.ones(2, 3), torch.zeros(2, 3)
    assert call(CacheFirst(), binding, {"input_ids": ids, "attention_mask": mask}).sum() == 0


def test_names_that_are_forward_s_first_parameters_in_order_go_by_position():
    binding = bind_inputs(CacheFirst(), ["input_ids", "past_key_values"], model="m")
    assert binding.is_plain(["input_ids", "past_key_values"])


def test_an_unknown_name_is_refused_saying_which_match_and_what_forward_takes():
    with pytest.raises(SpecError) as info:
        bind_inputs(CacheFirst(), ["input_ids", "mask"], model="m")
    message = info.value.message
    assert "input 'mask' matches no parameter of CacheFirst.forward(input_ids," in message
    assert "these match: 'input_ids'" in message
    assert "'attention_mask'" in message


def test_inputs_named_otherwise_fill_exactly_the_required_parameters_by_position():
    assert bind_inputs(nn.Sequential(nn.ReLU()), ["x"], model="m").is_plain(["x"])

    class Two(nn.Module):
        def forward(self, a, b, mask=None):
            return a + b

    assert bind_inputs(Two(), ["x", "y"], model="m").is_plain(["x", "y"])
    # Never into a parameter with a default under another name: the mask would land there.
    with pytest.raises(SpecError, match="inputs 'x', 'y', 'z' match no parameter"):
        bind_inputs(Two(), ["x", "y", "z"], model="m")
    with pytest.raises(SpecError, match="inputs 'ids', 'mask' match no parameter"):
        bind_inputs(CacheFirst(), ["ids", "mask"], model="m")


def test_a_required_parameter_no_input_gives_is_refused():
    with pytest.raises(SpecError, match=r"needs 'input_ids', which no input gives"):
        bind_inputs(CacheFirst(), ["attention_mask"], model="m")


def test_positional_only_parameters_go_by_position_with_defaults_before_them():
    module = PositionalOnly()
    a, b = torch.ones(2), torch.full((2,), 3.0)
    both = bind_inputs(module, ["b", "a"], model="m")
    assert both.positional == ("a", "b") and both.keywords == ()
    assert call(module, both, {"a": a, "b": b}).tolist() == [4.0, 4.0]
    scaled = bind_inputs(module, ["a", "scale"], model="m")
    assert scaled.keywords == ("scale",)
    assert call(module, scaled, {"a": a, "scale": torch.tensor(3.0)}).tolist() == [3.0, 3.0]


def test_names_beyond_the_parameters_go_into_args_or_kwargs():
    star = bind_inputs(Star(), ["u", "first", "v"], model="m")
    assert star.positional == ("first", "u", "v")
    ones = torch.ones(2)
    assert call(Star(), star, {"u": ones, "first": ones, "v": ones}).tolist() == [3.0, 3.0]
    kwargs = bind_inputs(Kwargs(), ["x", "bias"], model="m")
    assert kwargs.positional == () and kwargs.keywords == ("x", "bias")


def test_a_positional_parameter_skipped_before_args_takes_its_default():
    class DefaultThenStar(nn.Module):
        def forward(self, a, b=None, *rest):
            return a if b is None else a + b

    binding = bind_inputs(DefaultThenStar(), ["a", "extra"], model="m")
    assert binding.positional == ("a", Default(None), "extra")


def test_outputs_are_named_after_keys_and_places():
    t = torch.zeros(1)
    leaves = output_leaves(
        OrderedDict(last_hidden_state=t, pooler_output=t, past=((t, t), (t, None)), skip=None)
    )
    assert [leaf.name for leaf in leaves] == [
        "last_hidden_state",
        "pooler_output",
        "past.0.0",
        "past.0.1",
        "past.1.0",
    ]
    assert [leaf.name for leaf in output_leaves((t, (t, t)))] == [
        "output_0",
        "output_1.0",
        "output_1.1",
    ]
    assert [leaf.name for leaf in output_leaves(t)] == ["output"]
    assert [leaf.name for leaf in output_leaves((t,))] == ["output"]


class Cache:
    """Stands for a transformers DynamicCache: an object, not a tensor."""


def test_an_output_that_is_not_a_tensor_is_refused_naming_it_and_the_fix():
    leaves = output_leaves({"logits": torch.zeros(1), "past_key_values": Cache()})
    with pytest.raises(SpecError) as info:
        select_outputs(leaves, [], model="m")
    message = info.value.message
    assert "returns a Cache as output 'past_key_values'" in message
    assert "--ignore-output past_key_values" in message
    assert "use_cache=False" in message
    kept = select_outputs(leaves, ["past_key_values"], model="m")
    assert [leaf.name for leaf in kept] == ["logits"]


def test_ignoring_a_group_drops_every_output_in_it_and_an_unknown_name_lists_the_outputs():
    t = torch.zeros(1)
    leaves = output_leaves({"logits": t, "past": ((t, t), (t, t))})
    assert [leaf.name for leaf in select_outputs(leaves, ["past.1"], model="m")] == [
        "logits",
        "past.0.0",
        "past.0.1",
    ]
    with pytest.raises(
        SpecError, match=r"no output 'pasts' to ignore; its outputs are 'logits', 'past\.\*'"
    ):
        select_outputs(leaves, ["pasts"], model="m")
    with pytest.raises(SpecError, match="every output is ignored"):
        select_outputs(leaves, ["logits", "past"], model="m")


def test_a_bound_module_calls_by_name_and_returns_the_kept_outputs_flat():
    class DictOut(nn.Module):
        def forward(self, x, mask=None):
            return {"y": x * mask, "cache": Cache(), "z": (x + 1,)}

    binding = bind_inputs(DictOut(), ["mask", "x"], model="m")
    bound = BoundModule(DictOut(), binding, ["mask", "x"], [("y",), ("z", 0)])
    y, z = bound(torch.zeros(2), torch.full((2,), 3.0))
    assert y.tolist() == [0.0, 0.0] and z.tolist() == [4.0, 4.0]


def test_a_module_object_with_example_inputs_makes_specs_by_name():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(7, 4)

        def forward(self, ids, mask=None):
            return {"hidden": self.emb(ids) * mask[..., None]}

    ids = torch.tensor([[1, 6, 3], [0, 2, 5]])
    model = resolve_object(
        Net(),
        example_inputs={"mask": torch.ones(2, 3), "ids": ids},
        dynamic={"ids": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}},
    )
    assert model.name == "Net"
    assert model.inputs == (
        TensorSpec("mask", (Dim("batch", 2), Dim("seq", 3)), "float32"),
        TensorSpec("ids", (Dim("batch", 2), Dim("seq", 3)), "int64", ValueRange(0, 6)),
    )
    assert model.outputs == ("hidden",)
    assert isinstance(model.module, BoundModule)
    # A tuple binds to forward's parameters in order, and names them after them.
    assert [
        s.name for s in resolve_object(Net(), example_inputs=(ids, torch.ones(2, 3))).inputs
    ] == [
        "ids",
        "mask",
    ]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "give example_inputs (tensors) or inputs (specs)"),
        ({"example_inputs": {"x": 1.5}}, "example input 'x' is a float"),
        (
            {"example_inputs": {"x": torch.ones(2)}, "dynamic": {"y": {0: "b"}}},
            "which is no example input",
        ),
        (
            {"example_inputs": {"x": torch.ones(2)}, "dynamic": {"x": {3: "b"}}},
            "not one of its 1 axes",
        ),
        ({"example_inputs": {"x": torch.ones(1)}, "dynamic": {"x": {0: "b"}}}, "at least 2"),
        (
            {
                "example_inputs": {"x": torch.ones(2), "y": torch.ones(3)},
                "dynamic": {"x": {0: "b"}, "y": {0: "b"}},
            },
            "one label is one size",
        ),
    ],
)
def test_bad_example_inputs_say_what_is_wrong(kwargs, needle):
    class Add(nn.Module):
        def forward(self, x, y=None):
            return x if y is None else x.sum() + y.sum()

    with pytest.raises(SpecError) as info:
        resolve_object(Add(), **kwargs)
    assert needle in info.value.message
