"""Module containers and Module methods: plain lists refused, ModuleList/ModuleDict, apply, to."""

from __future__ import annotations

import numpy as np
import pytest

import autodiffx as ad
import autodiffx.nn as nn


class _Stack(nn.Module):
    """Five Linear(1, 1) layers: 10 parameters (the issue's 4-of-10 example, made honest)."""

    def __init__(self, wrap):
        super().__init__()
        self.first = nn.Linear(1, 1, rng=0)
        self.last = nn.Linear(1, 1, rng=1)
        self.layers = wrap([nn.Linear(1, 1, rng=i + 2) for i in range(3)])

    def forward(self, x):
        for m in [self.first, *self.layers, self.last]:
            x = m(x)
        return x


@pytest.mark.parametrize(
    "value",
    [
        [nn.Linear(1, 1, rng=0)],
        (nn.ReLU(), nn.Tanh()),
        {"a": nn.Linear(1, 1, rng=0)},
        [nn.Parameter([1.0])],
        [[nn.ReLU()]],  # nested
        {"a": [nn.Parameter([1.0])]},
    ],
)
def test_plain_containers_of_modules_are_refused(value):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = value

    fix = "ModuleDict" if isinstance(value, dict) else "ModuleList"
    with pytest.raises(TypeError, match=rf"Net\.layers: a plain .* not registered.*nn\.{fix}"):
        Net()


def test_plain_containers_without_modules_are_fine():
    m = nn.Module()
    m.sizes = [1, 2, 3]
    m.names = {"a": "b"}
    m.pair = (ad.tensor(1.0), 2)  # plain tensors are not registered, as before
    assert m.sizes == [1, 2, 3] and list(m.parameters()) == []


def test_registered_names_take_their_kind_or_none():
    m = nn.Linear(2, 1, rng=0)
    m.child = nn.Linear(1, 1, rng=0)
    m.register_buffer("count", np.zeros(1))
    with pytest.raises(
        TypeError, match=r"cannot assign ndarray as parameter 'weight' \(ad\.nn\.Par"
    ):
        m.weight = np.ones((1, 2))
    with pytest.raises(TypeError, match=r"as child module 'child' \(ad\.nn\.Module or None"):
        m.child = 3
    with pytest.raises(TypeError, match=r"cannot assign str as buffer 'count'"):
        m.count = "x"
    m.weight, m.child, m.count = None, None, np.ones(1)
    assert m.weight is None and m.child is None and isinstance(m.count, ad.Tensor)
    m.weight = nn.Parameter(np.ones((1, 2)))
    m.child = nn.Parameter(np.ones(1))  # a Parameter moves the name to the parameters
    assert dict(m.named_parameters())["child"] is m.child
    assert "child" not in dict(m.named_children())


def test_module_list_registers_every_parameter():
    net = _Stack(nn.ModuleList)
    assert len(list(net.parameters())) == 10
    names = [n for n, _ in net.named_parameters()]
    assert names[:2] == ["first.weight", "first.bias"]
    assert names[4:6] == ["layers.0.weight", "layers.0.bias"]
    assert "layers.2.bias" in net.state_dict()
    net(ad.ones((2, 1))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.eval()
    assert not net.layers[1].training


def test_module_list_operations():
    a, b, c, d = nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.Identity()
    ml = nn.ModuleList([a, b])
    ml.append(c)
    ml += [d]
    assert list(ml) == [a, b, c, d] and len(ml) == 4
    assert ml[-1] is d and ml[1] is b
    sub = ml[1:3]
    assert isinstance(sub, nn.ModuleList) and list(sub) == [b, c]
    del ml[0]
    assert list(ml) == [b, c, d] and [n for n, _ in ml.named_children()] == ["0", "1", "2"]
    ml.insert(1, a)
    assert list(ml) == [b, a, c, d]
    ml[0] = c
    assert ml[0] is c
    del ml[1:3]
    assert list(ml) == [c, d]
    assert len(nn.ModuleList().extend(x for x in [a, b])) == 2
    with pytest.raises(IndexError, match="out of range for length 2"):
        ml[2]
    with pytest.raises(TypeError, match="not a Module"):
        ml.append(3)
    with pytest.raises(TypeError, match="not a Module"):
        ml[0] = [a]
    with pytest.raises(TypeError, match="iterable of modules"):
        ml.extend(a)
    with pytest.raises(NotImplementedError):
        ml(ad.ones(1))


def test_module_dict_operations():
    a, b = nn.Linear(2, 1, rng=0), nn.Linear(2, 3, rng=1)
    md = nn.ModuleDict({"a": a})
    md.update([("b", b)])
    assert md.keys() == ["a", "b"] and md.values() == [a, b] and list(md) == ["a", "b"]
    assert md.items() == [("a", a), ("b", b)]
    assert "a" in md and "c" not in md and len(md) == 2
    assert [n for n, _ in md.named_parameters()] == ["a.weight", "a.bias", "b.weight", "b.bias"]
    assert md.b is b  # also reachable as an attribute
    md["c"] = nn.ReLU()
    assert md.pop("c").__class__ is nn.ReLU
    del md["a"]
    assert md.keys() == ["b"]
    md.update(nn.ModuleDict({"z": a}))
    assert md.keys() == ["b", "z"]
    md.clear()
    assert len(md) == 0 and list(md.parameters()) == []
    with pytest.raises(TypeError, match="keys must be strings"):
        md[1] = a
    with pytest.raises(KeyError, match="contain no"):
        md["x.y"] = a
    with pytest.raises(TypeError, match="not a Module"):
        md["x"] = 1.0
    with pytest.raises(TypeError, match="mapping or"):
        md.update([a])


def test_containers_state_dict_round_trip():
    src, dst = _Stack(nn.ModuleList), _Stack(nn.ModuleList)
    for p in dst.parameters():
        p.data[...] = 0
    dst.load_state_dict(src.state_dict())
    for p, q in zip(src.parameters(), dst.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, q.data)


def test_apply_is_post_order_and_returns_self():
    net = nn.Sequential(nn.Linear(2, 2, rng=0), nn.Sequential(nn.ReLU(), nn.Tanh()))
    seen = []
    assert net.apply(lambda m: seen.append(type(m).__name__)) is net
    assert seen == ["Linear", "ReLU", "Tanh", "Sequential", "Sequential"]

    def zero_linear(m):
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)

    net.apply(zero_linear)
    assert not net[0].weight.data.any()


@pytest.mark.oracle
def test_apply_order_matches_pytorch():
    torch = pytest.importorskip("torch")
    tn = torch.nn
    ours, theirs = [], []
    nn.Sequential(nn.Linear(2, 2, rng=0), nn.Sequential(nn.ReLU(), nn.Tanh())).apply(
        lambda m: ours.append(type(m).__name__)
    )
    tn.Sequential(tn.Linear(2, 2), tn.Sequential(tn.ReLU(), tn.Tanh())).apply(
        lambda m: theirs.append(type(m).__name__)
    )
    assert ours == theirs


class _WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 2, rng=0)
        self.register_buffer("stat", ad.zeros(2))
        self.register_buffer("count", ad.tensor(np.array(3, dtype=np.int64)))
        self.register_buffer("scratch", ad.ones(1), persistent=False)


def test_to_dtype_casts_floating_parameters_buffers_and_grads_in_place():
    m = _WithBuffers()
    w = m.lin.weight
    opt = ad.optim.SGD(m.parameters(), lr=0.1)
    m.lin(ad.ones(2)).sum().backward()
    assert m.to(np.float32) is m
    assert m.lin.weight is w and w.dtype == np.float32 and w.grad.dtype == np.float32
    assert m.lin.bias.dtype == np.float32 and w.requires_grad
    assert m.stat.dtype == np.float32 and m.scratch.dtype == np.float32
    assert m.count.dtype == np.int64  # integer buffers are left alone
    opt.step()  # the optimizer still holds the same (now float32) parameters
    assert w.dtype == np.float32
    assert m.double().lin.weight.dtype == np.float64 and m.stat.dtype == np.float64
    assert m.float().lin.weight.dtype == np.float32
    m.to("cpu", dtype="float64")
    assert m.lin.weight.dtype == np.float64
    assert m.to("cpu") is m
    with pytest.raises(TypeError, match="floating point or complex"):
        m.to(np.int32)
    with pytest.raises(TypeError, match="two dtypes"):
        m.to(np.float32, dtype=np.float64)


def test_to_never_drops_an_imaginary_part():
    m = nn.Module()
    m.z = nn.Parameter(np.array([1 + 2j]))
    m.to(np.complex64)
    assert m.z.dtype == np.complex64
    with pytest.raises(TypeError, match="imaginary part"):
        m.to(np.float64)
    assert m.z.dtype == np.complex64
    m.double()  # double()/float() leave complex parameters alone, as PyTorch
    assert m.z.dtype == np.complex64


def test_requires_grad_named_modules_and_buffers():
    m = _WithBuffers()
    assert m.requires_grad_(False) is m
    assert not any(p.requires_grad for p in m.parameters())
    m.requires_grad_()
    assert all(p.requires_grad for p in m.parameters())
    assert [n for n, _ in m.named_modules()] == ["", "lin"]
    assert [n for n, _ in m.named_parameters()] == ["lin.weight", "lin.bias"]
    assert list(m.state_dict()) == ["stat", "count", "lin.weight", "lin.bias"]
    assert [n for n, _ in m.named_buffers()] == ["stat", "count", "scratch"]


def test_plain_list_filled_after_assignment_is_refused_on_traversal():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(1, 1, rng=0)
            self.layers = []
            for i in range(4):
                self.layers.append(nn.Linear(1, 1, rng=i))

    net = Net()  # 10 parameters, of which only the head's 2 would be found
    calls = [
        lambda: list(net.parameters()),
        lambda: list(net.modules()),
        net.state_dict,
        net.train,
        net.zero_grad,
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"Net\.layers: a plain list .* nn\.ModuleList"):
            call()
    inner = nn.Sequential(Net())  # also found below the top module
    with pytest.raises(TypeError, match=r"Net\.layers"):
        list(inner.parameters())
