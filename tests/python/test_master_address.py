"""lightring.distributed.master_address(): never a loopback address for a multi-node job (a usual
Debian /etc/hosts maps the host name to 127.0.1.1), the override, and the error."""
import socket

import pytest

from lightring import distributed


def test_loopback_name_falls_back_to_an_interface(monkeypatch):
    monkeypatch.delenv("LIGHTRING_MASTER_ADDR", raising=False)
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "127.0.1.1")
    found = distributed._interface_addresses()
    if not found:
        pytest.skip("this host has no non-loopback IPv4 interface")
    address = distributed.master_address()
    assert address == found[0] and not address.startswith("127.")
    socket.inet_aton(address)  # a valid IPv4 address


def test_routable_name_is_kept_and_override_wins(monkeypatch):
    monkeypatch.delenv("LIGHTRING_MASTER_ADDR", raising=False)
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "192.0.2.7")
    assert distributed.master_address() == "192.0.2.7"
    monkeypatch.setenv("LIGHTRING_MASTER_ADDR", "192.0.2.99")
    assert distributed.master_address() == "192.0.2.99"


def test_no_address_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("LIGHTRING_MASTER_ADDR", raising=False)
    monkeypatch.setattr(socket, "gethostbyname", lambda name: "127.0.1.1")
    monkeypatch.setattr(distributed, "_interface_addresses", lambda: [])
    with pytest.raises(RuntimeError, match="export MASTER_ADDR"):
        distributed.master_address()
