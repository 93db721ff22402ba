"""What `make run` prints is true for a moved RUN_DIR too: the `make stop` that finds it, and how the
CLI gets its settings (it looks in data/run unless VISIONRAG_RUN_ENV_FILE says otherwise)."""

from __future__ import annotations

import socket

from serving.stack import DEFAULT_RUN_DIR, RUN_ENV_VARIABLE, cli_settings_line, make_stop


def test_the_default_run_folder_needs_nothing_more():
    run_dir = DEFAULT_RUN_DIR.resolve()
    assert make_stop(run_dir) == "make stop"
    assert cli_settings_line(run_dir, {}) == (
        f"the visionrag CLI (.venv/bin/visionrag) takes these settings from {run_dir / 'gateway.env'}")


def test_a_moved_run_folder_prints_the_commands_that_find_it(tmp_path):
    run_dir = tmp_path / "my run"
    assert make_stop(run_dir) == f"make stop RUN_DIR='{run_dir}'"
    line = cli_settings_line(run_dir, {})
    assert line.splitlines() == [
        f"the visionrag CLI (.venv/bin/visionrag) takes these settings from {run_dir / 'gateway.env'} once this shell has",
        f"  export {RUN_ENV_VARIABLE}='{run_dir / 'gateway.env'}'",
    ]


def test_a_moved_run_folder_the_shell_already_points_at_needs_nothing_more(tmp_path):
    env_file = tmp_path / "gateway.env"
    assert cli_settings_line(tmp_path, {RUN_ENV_VARIABLE: str(env_file)}).endswith(f"from {env_file}")
    # The variable pointing elsewhere (or empty: no runtime file) is not enough, even for the default folder.
    assert "export" in cli_settings_line(tmp_path, {RUN_ENV_VARIABLE: str(tmp_path / "other.env")})
    assert "export" in cli_settings_line(DEFAULT_RUN_DIR.resolve(), {RUN_ENV_VARIABLE: ""})


def test_the_waiting_line_shortens_the_log_line_at_a_word():
    from serving.stack import progress_line

    long = "INFO 12-06 05:19:01 [loader.py:42] Loading weights took 1.23 seconds; " + "compiling graphs " * 10
    line = progress_line("vLLM /health", 30.4, long + "\n")
    assert line.startswith("  waiting for vLLM /health: 30 s ... INFO 12-06 05:19:01 [loader.py:42] Loading")
    assert line.endswith("graphs …") and len(line) < 200
    assert progress_line("gateway", 10, "short line") == "  waiting for gateway: 10 s ... short line"


def test_a_port_in_use_suggests_a_free_one_near_it(tmp_path, capsys):
    from serving.stack import main, next_free_port, port_open

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        suggested = next_free_port("127.0.0.1", port)
        assert suggested > port and not port_open("127.0.0.1", suggested)
        code = main(["start", "--profile", "tiny", "--run-dir", str(tmp_path), "--vllm-port", str(port)])
    assert code == 1
    assert f"127.0.0.1:{port} (for vLLM) is already in use; another port: `make run VLLM_PORT=" in capsys.readouterr().err


def test_restart_vllm_stops_the_recorded_one_and_starts_it_again_as_recorded(tmp_path, monkeypatch, capsys):
    import json
    import sys

    from serving import stack

    port = stack.free_port()
    (tmp_path / stack.VLLM_RECORD).write_text(json.dumps({"profile": "tiny", "host": "127.0.0.1", "port": port}))
    old = stack.start_process_group([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "old.log")
    (tmp_path / "vllm.pid").write_text(f"{old.pid}\n")
    started: list[list[str]] = []
    # A stand-in for launch.py serve: answers /health on the recorded port.
    health = ("import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n def do_GET(self):\n"
              "  self.send_response(200); self.end_headers()\n"
              f"h.HTTPServer(('127.0.0.1', {port}), H).serve_forever()")

    real_start = stack.start_process_group

    def fake_start(argv, log_path, env=None, cwd=stack.REPO_ROOT):
        started.append(argv)
        return real_start([sys.executable, "-c", health], log_path)

    monkeypatch.setattr(stack, "start_process_group", fake_start)
    try:
        assert stack.main(["restart-vllm", "--run-dir", str(tmp_path), "--health-deadline", "30"]) == 0
        assert old.wait(timeout=5) is not None  # stopped (and reaped)
        (argv,) = started
        assert argv[-6:] == ["--profile", "tiny", "--host", "127.0.0.1", "--port", str(port)]
        new_pid = int((tmp_path / "vllm.pid").read_text())
        assert new_pid != old.pid and "vLLM healthy after" in capsys.readouterr().out
    finally:
        stack.stop_process_group(int((tmp_path / "vllm.pid").read_text()), grace_s=5)


def test_restart_vllm_without_a_recorded_run_says_so(tmp_path, capsys):
    from serving.stack import main

    assert main(["restart-vllm", "--run-dir", str(tmp_path)]) == 1
    assert "no `make run` recorded" in capsys.readouterr().err
