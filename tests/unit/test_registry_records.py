"""Registry entries are plain records (issue 23: no dataclass creation at start-up) that behave
like the frozen dataclasses they replaced: equality and hash by fields, a dataclass-style repr,
assignment refused with FrozenInstanceError, copies equal to the original."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from aclmilter import registry
from aclmilter.registry import TABLES, Check, Item, Kind, Setting, Slot
from aclmilter.stages import Stage


def _run(ctx: object, arg: object) -> None:
    return None


def test_equal_fields_are_equal_records_with_equal_hashes() -> None:
    a = Item("x", Kind.CONDITION, Stage.RCPT, _run, checks=("spf",))
    b = Item("x", Kind.CONDITION, Stage.RCPT, _run, checks=("spf",))
    assert a == b and hash(a) == hash(b)
    assert a != Item("y", Kind.CONDITION, Stage.RCPT, _run, checks=("spf",))
    assert Check("c", _run) != Setting("c", _run)          # another type is never equal


def test_repr_names_every_field_like_a_dataclass() -> None:
    assert repr(Slot("s", "connection", dict)) == "Slot(name='s', scope='connection', factory=<class 'dict'>)"


def test_fields_cannot_be_changed_or_deleted() -> None:
    s = Setting("n", str, 1, "doc")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.default = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del s.doc  # type: ignore[misc]
    with pytest.raises(AttributeError):
        s.other = 1  # type: ignore[attr-defined]
    assert s.default == 1


def test_copies_and_pickles_equal_the_original() -> None:
    s = Setting("n", str, (1, 2), "doc")
    assert copy.copy(s) == s and copy.deepcopy(s) == s
    assert pickle.loads(pickle.dumps(s)) == s


def test_every_registered_entry_has_its_defaults() -> None:
    import aclmilter.conditions  # noqa: F401 - fills the registry
    spf = TABLES.checks["spf"]
    assert (spf.scope, spf.needs) == ("transaction", ())
    assert all(isinstance(e, registry.Item) for e in TABLES.items.values())
    assert TABLES.items["hosts"].arg is registry.ArgMode.LIST
