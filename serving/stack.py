"""Start and stop the local stack for `make run` / `make stop`: vLLM, then the gateway in front of it.

Each server runs in the background in its own process group (so stopping it also stops the
workers it forked), with a pid file and a log under the run folder (default data/run/); logs are
appended to, each run starting with a marker line:

    python serving/stack.py start --profile tiny     # waits for vLLM's /health, then the gateway
    python serving/stack.py stop                     # gateway first, then vLLM: SIGTERM, then SIGKILL
    python serving/stack.py restart-vllm             # vLLM alone, as the last start ran it (make restart-vllm)

Standard library only. The process helpers here are also used by the test suite's vLLM fixture.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

try:
    from serving import launch
except ImportError:  # run as a script: serving/ itself is sys.path[0]
    import launch  # type: ignore[no-redef]

REPO_ROOT = launch.REPO_ROOT
HEALTH_DEADLINE_S = 300.0  # vLLM start-up is 30-90 s on 2 cores, mostly imports; allow 2x and more
GATEWAY_DEADLINE_S = 60.0
RUN_ENV_NAME = "gateway.env"  # in the run folder; see write_run_env
DEFAULT_RUN_DIR = REPO_ROOT / "data" / "run"  # where the CLI looks for RUN_ENV_NAME (gateway/cli/env.py)
RUN_ENV_VARIABLE = "VISIONRAG_RUN_ENV_FILE"  # names another RUN_ENV_NAME for the CLI
VLLM_RECORD = "vllm.json"  # in the run folder: how `start` ran vLLM, for `restart-vllm`


# ---- process helpers ------------------------------------------------------------------------------


def start_process_group(
    argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT
) -> subprocess.Popen[bytes]:
    """Start argv detached from our terminal, in a new session (= its own process group)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def mark_start(log_path: Path, message: str) -> None:
    """Keep earlier runs' logs; mark where this run begins, as a JSON line (valid in a JSON log too)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with log_path.open("a", encoding="utf-8") as log:
        log.write(json.dumps({"time": stamp, "level": "INFO", "logger": "make run", "message": message}) + "\n")


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def next_free_port(host: str, port: int) -> int:
    """The first port after `port` nobody listens on: a number close to the one asked for, to suggest."""
    candidate = port + 1
    while candidate < 65535 and port_open(host, candidate, timeout_s=0.2):
        candidate += 1
    return candidate


def wait_until(
    ready: Callable[[], bool],
    *,
    process: subprocess.Popen[bytes] | None,
    deadline_s: float,
    what: str,
    log_path: Path,
    progress: Callable[[str], None] | None = None,
    every_s: float = 10.0,
) -> float:
    """Poll `ready` until it is true; returns seconds waited. Raises RuntimeError with the log tail
    when the process exits or the deadline passes."""
    started = time.monotonic()
    last_report = started
    while True:
        if ready():
            return time.monotonic() - started
        waited = time.monotonic() - started
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {process.returncode} after {waited:.0f} s; "
                f"last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if waited > deadline_s:
            raise RuntimeError(
                f"{what} not ready after {deadline_s:.0f} s; last lines of {log_path}:\n{log_tail(log_path)}"
            )
        if progress is not None and time.monotonic() - last_report >= every_s:
            last_report = time.monotonic()
            progress(progress_line(what, waited, log_tail(log_path, 1)))
        time.sleep(0.5)


def progress_line(what: str, waited: float, last_log_line: str, width: int = 140) -> str:
    """`waiting for X: N s ... <the log's last line>`, the log line shortened at a word boundary with an
    ellipsis (cut at a fixed width, it ended mid-word and looked like a broken line)."""
    line = " ".join(last_log_line.split())
    if len(line) > width:
        line = line[:width].rsplit(" ", 1)[0].rstrip(" ,;:") + " …"
    return f"  waiting for {what}: {waited:.0f} s ... {line}"


def stop_process_group(pid: int, grace_s: float = 20.0) -> bool:
    """SIGTERM the process group led by pid, SIGKILL what is left after grace_s. False if none ran."""
    try:
        if os.getpgid(pid) != pid:  # not a group we started (the pid was reused): leave it alone
            return False
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.2)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ---- the stack ------------------------------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def gateway_run_env(
    profile: launch.Profile, gateway_python: str, host: str, vllm_port: int, gateway_port: int
) -> dict[str, str] | str:
    """What the gateway gets beyond the environment and `.env`: the profile's [gateway.env] (its
    relative paths made absolute: they are the repository's), the upstream, where it listens and its
    data dir as an absolute path. An error message instead if the gateway's settings do not load."""
    env = {key: _repo_path(value) if key.endswith(("_DIR", "_PATH")) else value
           for key, value in profile.gateway_env.items()}
    env.update({"VISIONRAG_UPSTREAM_URLS": f"http://{host}:{vllm_port}/v1",
                "VISIONRAG_HOST": host, "VISIONRAG_PORT": str(gateway_port)})
    # The gateway's own settings code decides the data dir (environment, then .env, then its default);
    # run with its Python from the repository root, as the gateway itself will be.
    probe = subprocess.run(
        [gateway_python, "-c", "from gateway.settings import Settings; print(Settings().data_dir.resolve())"],
        cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=120,
    )
    if probe.returncode != 0:
        return f"the gateway's settings do not load:\n{probe.stderr.strip()[-2000:]}"
    env["VISIONRAG_DATA_DIR"] = probe.stdout.strip()
    return env


def _repo_path(value: str) -> str:
    return str(REPO_ROOT / value) if value and not Path(value).is_absolute() else value


def write_run_env(path: Path, env: dict[str, str], profile: str) -> None:
    """The runtime file the `visionrag` CLI reads (gateway/cli/env.py), so that it uses the same data,
    models and gateway from any folder. Kept after `make stop`: the CLI still needs the models then."""
    lines = [f"# Written by serving/stack.py start (make run) for profile {profile!r}: the gateway's",
             "# settings beyond the environment and .env. Read by the visionrag CLI; rewritten by each start."]
    for key, value in env.items():
        quote = '"' if "'" in value else "'"
        lines.append(f"{key}={quote}{value}{quote}")
    path.write_text("\n".join(lines) + "\n")


def gpu_preflight(profile: launch.Profile, timeout_s: float = 300.0) -> str | None:
    """For tensor-parallel GPU profiles: serving/gpu_preflight.py with the profile's python, so a broken
    peer-to-peer path between the GPUs is a diagnosis here rather than a silent vLLM hang. None = fine."""
    if profile.accelerator != "cuda" or profile.tensor_parallel_size < 2:
        return None
    command = [launch.python_for(profile), str(REPO_ROOT / "serving" / "gpu_preflight.py"),
               "--gpus", str(profile.tensor_parallel_size)]
    try:
        result = subprocess.run(command, cwd=REPO_ROOT, check=False, timeout=timeout_s + 60,
                                env={**os.environ, **profile_env(profile)})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the GPU preflight ({' '.join(command)}) did not run: {exc}"
    if result.returncode != 0:
        return "the GPU preflight failed (diagnosis above); vLLM was not started"
    return None


def profile_env(profile: launch.Profile) -> dict[str, str]:
    """The profile's literal [env] values (NCCL and P2P settings among them), secrets left out."""
    return {k: str(v) for k, v in profile.data.get("env", {}).items() if "${" not in str(v)}


def start_vllm(run_dir: Path, profile: str, host: str, port: int, deadline_s: float) -> bool:
    """Start vLLM in its process group and wait for its /health; False (said on stderr, vLLM stopped) if
    it exits or the deadline passes first."""
    vllm_log = run_dir / "vllm.log"
    mark_start(vllm_log, f"vLLM starting (profile {profile}, port {port})")
    vllm = start_process_group(
        [sys.executable, str(REPO_ROOT / "serving" / "launch.py"), "serve", "--profile", profile,
         "--host", host, "--port", str(port)],
        vllm_log,
    )
    (run_dir / "vllm.pid").write_text(f"{vllm.pid}\n")
    print(f"vLLM ({profile}) starting: pid {vllm.pid}, log {vllm_log}", flush=True)
    try:
        waited = wait_until(
            lambda: http_ok(f"http://{host}:{port}/health"),
            process=vllm,
            deadline_s=deadline_s,
            what="vLLM /health",
            log_path=vllm_log,
            progress=lambda line: print(line, flush=True),
        )
    except RuntimeError as exc:
        stop_process_group(vllm.pid)
        (run_dir / "vllm.pid").unlink(missing_ok=True)
        print(f"error: {exc}", file=sys.stderr)
        return False
    print(f"vLLM healthy after {waited:.0f} s: http://{host}:{port}/v1", flush=True)
    return True


def restart_vllm(options: argparse.Namespace) -> int:
    """Stop vLLM if it runs and start it again as the last `start` did (its profile, host and port),
    leaving the gateway running: it answers chats again as soon as vLLM's /health does."""
    run_dir = (REPO_ROOT / options.run_dir).resolve()
    try:
        record = json.loads((run_dir / VLLM_RECORD).read_text())
    except (OSError, ValueError):
        print(f"error: no `make run` recorded in {run_dir}; start the stack with `make run`", file=sys.stderr)
        return 1
    pid = _read_pid(run_dir / "vllm.pid")
    if pid is not None and stop_process_group(pid):
        print(f"stopped vllm (process group {pid})", flush=True)
    (run_dir / "vllm.pid").unlink(missing_ok=True)
    if port_open(record["host"], record["port"]):
        print(f"error: {record['host']}:{record['port']} (for vLLM) is in use by a process this run did not "
              "start", file=sys.stderr)
        return 1
    return 0 if start_vllm(run_dir, record["profile"], record["host"], record["port"], options.health_deadline) else 1


def start(options: argparse.Namespace) -> int:
    run_dir = (REPO_ROOT / options.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in ("vllm", "gateway"):
        if (pid := _read_pid(run_dir / f"{name}.pid")) is not None:
            print(f"error: {name} is already running (pid {pid}); `{make_stop(run_dir)}` first", file=sys.stderr)
            return 1
    host = "127.0.0.1"
    for what, port, setting in (("vLLM", options.vllm_port, "VLLM_PORT"),
                                ("gateway", options.gateway_port, "GATEWAY_PORT")):
        if port_open(host, port):
            print(f"error: {host}:{port} (for {what}) is already in use; another port: "
                  f"`make run {setting}={next_free_port(host, port)}`", file=sys.stderr)
            return 1

    profile = launch.load_profile(options.profile)
    run_env = gateway_run_env(profile, options.gateway_python, host, options.vllm_port, options.gateway_port)
    if isinstance(run_env, str):
        print(f"error: {run_env}", file=sys.stderr)
        return 1
    write_run_env(run_dir / RUN_ENV_NAME, run_env, profile.name)
    if (problem := gpu_preflight(profile)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    (run_dir / VLLM_RECORD).write_text(json.dumps({"profile": profile.name, "host": host,
                                                   "port": options.vllm_port}) + "\n")
    if not start_vllm(run_dir, profile.name, host, options.vllm_port, options.health_deadline):
        return 1

    env = {**os.environ, **run_env}
    if "VLLM_API_KEY" in profile.data.get("env", {}) and os.environ.get("VLLM_API_KEY"):
        env.setdefault("VISIONRAG_UPSTREAM_API_KEY", os.environ["VLLM_API_KEY"])
    gateway_log = run_dir / "gateway.log"
    mark_start(gateway_log, f"gateway starting (port {options.gateway_port})")
    gateway = start_process_group(
        [
            options.gateway_python,
            "-m",
            "uvicorn",
            "gateway.api.app:create_app",
            "--factory",
            "--host",
            host,
            "--port",
            str(options.gateway_port),
        ],
        gateway_log,
        env=env,
    )
    (run_dir / "gateway.pid").write_text(f"{gateway.pid}\n")
    try:
        wait_until(
            lambda: port_open(host, options.gateway_port),
            process=gateway,
            deadline_s=GATEWAY_DEADLINE_S,
            what="gateway",
            log_path=gateway_log,
            progress=lambda line: print(line, flush=True),
        )
    except RuntimeError as exc:
        print(f"error: {exc}\nstopping vLLM too.", file=sys.stderr)
        stop(options)
        return 1
    print(
        f"gateway ready: http://{host}:{options.gateway_port} (pid {gateway.pid}, log {gateway_log})\n"
        f"model: {profile.served_model_name}; data: {run_env['VISIONRAG_DATA_DIR']}; "
        f"stop both with `{make_stop(run_dir)}`\n{cli_settings_line(run_dir)}",
        flush=True,
    )
    return 0


def make_stop(run_dir: Path) -> str:
    """The `make stop` that finds this run folder: `make stop` alone looks in the default one."""
    return "make stop" if run_dir == DEFAULT_RUN_DIR.resolve() else f"make stop RUN_DIR={shlex.quote(str(run_dir))}"


def cli_settings_line(run_dir: Path, environ: Mapping[str, str] = os.environ) -> str:
    """Where the CLI takes this run's settings from. It looks in the default run folder unless
    VISIONRAG_RUN_ENV_FILE names another file (gateway/cli/env.py), so a moved run folder needs that
    variable, which the line then gives as a command to paste."""
    path = run_dir / RUN_ENV_NAME
    line = f"the visionrag CLI (.venv/bin/visionrag) takes these settings from {path}"
    configured = environ.get(RUN_ENV_VARIABLE)
    if configured is None:
        found = run_dir == DEFAULT_RUN_DIR.resolve()
    else:
        found = bool(configured.strip()) and Path(configured).resolve() == path
    if found:
        return line
    return f"{line} once this shell has\n  export {RUN_ENV_VARIABLE}={shlex.quote(str(path))}"


def stop(options: argparse.Namespace) -> int:
    run_dir = (REPO_ROOT / options.run_dir).resolve()
    for name in ("gateway", "vllm"):  # the gateway first: it holds connections to vLLM
        pid_file = run_dir / f"{name}.pid"
        pid = _read_pid(pid_file)
        if pid is not None and stop_process_group(pid):
            print(f"stopped {name} (process group {pid})")
        else:
            print(f"{name}: not running")
        pid_file.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="serving/stack.py", description="Run vLLM and the gateway in the background (make run/stop)."
    )
    parser.add_argument("--run-dir", default="data/run", help="pid files and logs (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    start_parser = sub.add_parser("start", help="start vLLM, wait for /health, then start the gateway")
    start_parser.add_argument("--profile", required=True, help="serving profile (see launch.py list)")
    start_parser.add_argument("--vllm-port", type=int, default=8000)
    start_parser.add_argument("--gateway-port", type=int, default=8080)
    start_parser.add_argument("--gateway-python", default=str(REPO_ROOT / ".venv" / "bin" / "python"))
    start_parser.add_argument("--health-deadline", type=float, default=HEALTH_DEADLINE_S)
    start_parser.set_defaults(func=start)
    stop_parser = sub.add_parser("stop", help="stop the gateway, then vLLM (SIGTERM, then SIGKILL)")
    stop_parser.set_defaults(func=stop)
    restart_parser = sub.add_parser("restart-vllm", help="stop vLLM and start it again as the last start did, "
                                                         "leaving the gateway running")
    restart_parser.add_argument("--health-deadline", type=float, default=HEALTH_DEADLINE_S)
    restart_parser.set_defaults(func=restart_vllm)
    # `--run-dir` is accepted before or after the subcommand.
    for sub_parser in (start_parser, stop_parser, restart_parser):
        sub_parser.add_argument("--run-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    return options.func(options)


if __name__ == "__main__":
    sys.exit(main())
