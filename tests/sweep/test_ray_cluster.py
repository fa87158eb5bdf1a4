"""sweep.ray_cluster: an address where no Ray answers is one line, within the bound."""

from __future__ import annotations

from ray_support import one_line_error

from ninsweep.cli import main


def test_run_on_an_address_where_nothing_listens_is_one_line_at_once(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    storage = tmp_path / "storage"
    assert main(["run", "smoke", "--storage", str(storage), "--address", f"127.0.0.1:{port}"]) == 2
    err = one_line_error(capsys)
    assert f"cannot reach Ray at 127.0.0.1:{port}" in err and "refused" in err
    assert not storage.exists() or list(storage.iterdir()) == []


def test_run_on_a_port_that_is_not_ray_is_one_line_within_the_bound(tmp_path, capsys, monkeypatch):
    import socket

    monkeypatch.setenv("NINSWEEP_CONNECT_TIMEOUT", "1")
    with socket.socket() as server:  # accepts, never speaks: an SSH port, a stuck proxy
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        storage = tmp_path / "storage"
        assert main(["run", "smoke", "--storage", str(storage), "--address",
                     f"127.0.0.1:{port}"]) == 2
    err = one_line_error(capsys)
    assert "the port answers but not as a Ray cluster" in err
    assert not storage.exists() or list(storage.iterdir()) == []
