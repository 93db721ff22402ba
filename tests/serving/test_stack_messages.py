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
