"""$LIGHTRING_MASTER_ADDR is checked when it is read: a value that is neither an address nor a
name that resolves is a ValueError naming the variable (before any rendezvous, instead of a
connect timeout on every rank); an address or a resolvable name is kept as given."""
import pytest

from lightring import distributed


@pytest.mark.parametrize("value", ["garbage:12:34", "no such host", "a..b"])
def test_unresolvable_override_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("LIGHTRING_MASTER_ADDR", value)
    with pytest.raises(ValueError, match=r"\$LIGHTRING_MASTER_ADDR=.* is neither an address"):
        distributed.master_address()


@pytest.mark.parametrize("value", ["192.0.2.99", "localhost", "::1"])
def test_resolvable_override_is_kept(monkeypatch, value):
    monkeypatch.setenv("LIGHTRING_MASTER_ADDR", value)
    assert distributed.master_address() == value
