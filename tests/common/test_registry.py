from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.common.registry import Registry, RegistryError
from tests.registry import registered


def test_entries_come_back_by_order_then_name() -> None:
    # given
    hooks: Registry[str] = Registry("hooks")
    hooks.register("b", "B")
    hooks.register("a", "A")
    hooks.register("late", "L", order=10)
    hooks.register("early", "E", order=-1)

    # then
    assert list(hooks) == ["E", "A", "B", "L"]
    assert hooks.names() == ["early", "a", "b", "late"]
    assert hooks["a"] == "A"
    assert "late" in hooks
    assert len(hooks) == 4


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=5), st.integers(-3, 3)),
        unique_by=lambda t: t[0],
        max_size=8,
    ),
    st.randoms(),
)
def test_the_order_does_not_depend_on_the_order_of_registering(entries, random) -> None:
    # given the same entries registered in two orders
    first: Registry[str] = Registry("first")
    second: Registry[str] = Registry("second")
    for name, order in entries:
        first.register(name, name, order=order)
    shuffled = list(entries)
    random.shuffle(shuffled)
    for name, order in shuffled:
        second.register(name, name, order=order)

    # then
    assert (
        list(first) == list(second) == [n for n, _ in sorted(entries, key=lambda t: (t[1], t[0]))]
    )


def test_a_duplicate_name_is_refused_with_a_clear_error() -> None:
    # given
    hooks: Registry[str] = Registry("identity.merged")
    hooks.register("events", "first")

    # when / then
    with pytest.raises(RegistryError, match=r"identity.merged: 'events' is registered already"):
        hooks.register("events", "second")
    assert list(hooks) == ["first"]


def test_an_entry_needs_a_name() -> None:
    with pytest.raises(RegistryError, match="needs a name"):
        Registry[str]("x").register("", "entry")


def test_register_as_a_decorator_returns_the_function() -> None:
    # given
    stages: Registry[object] = Registry("stages")

    # when
    @stages.register("double", order=2)
    def double(x: int) -> int:
        return 2 * x

    # then
    assert double(2) == 4
    assert stages["double"] is double


def test_an_unknown_name_says_which_registry() -> None:
    with pytest.raises(KeyError, match="stages: nothing is registered as 'nope'"):
        Registry[str]("stages")["nope"]


def test_the_test_helper_leaves_the_registry_as_it_was() -> None:
    # given
    hooks: Registry[str] = Registry("hooks")
    hooks.register("kept", "K")

    # when
    with registered(hooks, "temporary", "T"):
        inside = list(hooks)

    # then
    assert inside == ["K", "T"]
    assert list(hooks) == ["K"]
