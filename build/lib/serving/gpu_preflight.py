"""Before vLLM starts tensor-parallel: can the GPUs see each other, and does an NCCL all-reduce
between them finish? A broken PCIe peer-to-peer path (two L40S have no NVLink) otherwise shows up
as vLLM hanging at start-up with nothing in its log. Run with the python that has vLLM's torch:

    python serving/gpu_preflight.py --gpus 2 [--timeout 180]

Exit 0: fine. Exit 3: a diagnosis on stderr. `make run` (serving/stack.py) and the RunPod start
script call it for GPU profiles. Standard library at import; torch only inside the checks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

HINTS = """\
What to try (two PCIe GPUs, no NVLink):
  - `nvidia-smi topo -m`: GPUs under different CPU sockets (SYS) or behind a PCIe switch with ACS on
    often fail peer-to-peer; disable ACS / IOMMU pass-through in the BIOS, or ask the host for GPUs
    on one PCIe switch.
  - NCCL_P2P_DISABLE=1: NCCL copies through host memory instead (slower, but it works).
  - NCCL_CUMEM_HOST_ENABLE=0: NCCL 2.23+ allocates host buffers with cuMem, which some
    container/driver setups reject.
  - vLLM's --disable-custom-all-reduce: its own all-reduce needs working peer access.
  - NCCL_DEBUG=INFO on this check shows where NCCL stops."""


class PreflightError(RuntimeError):
    pass


def check_devices(gpus: int) -> None:
    import torch

    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < gpus:
        raise PreflightError(
            f"tensor parallelism over {gpus} GPUs, but torch {torch.__version__} sees {found} CUDA device(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Check `nvidia-smi`, "
            "the container's GPU request (--gpus / nvidia.com/gpu) and that torch is a CUDA build."
        )
    blocked = [(a, b) for a in range(gpus) for b in range(gpus)
               if a != b and not torch.cuda.can_device_access_peer(a, b)]
    if blocked:
        # Not fatal: NCCL then goes through host memory. Said so because it explains slow decoding.
        pairs = ", ".join(f"{a}->{b}" for a, b in blocked)
        print(f"gpu preflight: the driver reports no peer access for {pairs}; NCCL will copy through host "
              "memory and vLLM disables its custom all-reduce.", file=sys.stderr)


def worker(rank: int, world: int, port: int) -> None:
    """One rank of a tiny NCCL all-reduce (started as a subprocess of run_all_reduce)."""
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    tensor = torch.ones(1 << 20, device="cuda")
    dist.all_reduce(tensor)
    torch.cuda.synchronize()
    if not bool((tensor == world).all()):
        raise SystemExit(f"rank {rank}: all-reduce gave wrong values")
    dist.destroy_process_group()


def run_ranks(commands: list[list[str]], timeout_s: float) -> None:
    """Start one process per rank; all must exit 0 within timeout_s, else PreflightError."""
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for command in commands]
    try:
        for rank, process in enumerate(processes):
            output, _ = process.communicate(timeout=timeout_s)
            if process.returncode != 0:
                raise PreflightError(f"NCCL all-reduce failed on rank {rank} (exit {process.returncode}):\n"
                                     f"{output.strip()[-2000:]}")
    except subprocess.TimeoutExpired:
        raise PreflightError(
            f"NCCL all-reduce between the GPUs did not finish within {timeout_s:g} s: peer-to-peer traffic "
            "between them hangs, and vLLM would hang the same way at start-up."
        ) from None
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for the all-reduce")
    parser.add_argument("--worker", nargs=3, type=int, metavar=("RANK", "WORLD", "PORT"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.worker:
        worker(*options.worker)
        return 0
    try:
        check_devices(options.gpus)
        port = free_port()
        run_ranks([[sys.executable, __file__, "--gpus", str(options.gpus), "--worker", str(rank),
                    str(options.gpus), str(port)] for rank in range(options.gpus)], options.timeout)
    except PreflightError as exc:
        print(f"gpu preflight FAILED: {exc}\n{HINTS}", file=sys.stderr)
        return 3
    print(f"gpu preflight: {options.gpus} GPUs see each other and an NCCL all-reduce completes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
