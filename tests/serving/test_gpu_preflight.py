"""serving/gpu_preflight.py: the check before tensor-parallel vLLM starts. No GPU here: the device
check runs against the real CPU torch of .venv-vllm (which sees no CUDA device), and the all-reduce
ranks are stood in for by plain processes that hang or fail, as a broken PCIe peer path would."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from serving import gpu_preflight, launch, stack

VLLM_PYTHON = launch.REPO_ROOT / ".venv-vllm" / "bin" / "python"
PREFLIGHT = str(launch.REPO_ROOT / "serving" / "gpu_preflight.py")


def test_no_cuda_device_is_a_diagnosis_not_a_hang():
    assert VLLM_PYTHON.exists(), "make serving-test-deps builds .venv-vllm"
    result = subprocess.run([str(VLLM_PYTHON), PREFLIGHT, "--gpus", "2"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 3
    assert "tensor parallelism over 2 GPUs" in result.stderr and "sees 0 CUDA device(s)" in result.stderr
    assert "NCCL_P2P_DISABLE=1" in result.stderr and "--disable-custom-all-reduce" in result.stderr


def test_a_hanging_all_reduce_is_cut_at_the_timeout_and_explained():
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    with pytest.raises(gpu_preflight.PreflightError, match="did not finish within 1 s: peer-to-peer"):
        gpu_preflight.run_ranks([hang, hang], timeout_s=1)
    assert time.monotonic() - started < 10  # both ranks killed, not waited for


def test_a_failing_rank_shows_its_output():
    fail = [sys.executable, "-c", "import sys; print('NCCL WARN Cuda failure'); sys.exit(1)"]
    ok = [sys.executable, "-c", "pass"]
    with pytest.raises(gpu_preflight.PreflightError, match="rank 1 \\(exit 1\\):\nNCCL WARN Cuda failure"):
        gpu_preflight.run_ranks([ok, fail], timeout_s=30)


def test_make_run_preflights_only_tensor_parallel_gpu_profiles():
    assert stack.gpu_preflight(launch.load_profile("tiny")) is None
    llama = launch.load_profile("llama32-vision-2xl40s")
    problem = stack.gpu_preflight(llama)
    # Here its venv (CUDA torch) does not exist: refused with a message, vLLM never started.
    assert problem is not None and "preflight" in problem
    assert stack.profile_env(llama)["VLLM_SKIP_P2P_CHECK"] == "0" and "VLLM_API_KEY" not in stack.profile_env(llama)
