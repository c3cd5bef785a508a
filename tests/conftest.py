"""Every test runs on a real multi-device mesh: JAX sees 8 CPU devices, set before the backend starts."""

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Each test process (a pytest-xdist worker) builds datasets in its own fresh cache, as on a fresh clone,
# never in the user's ~/.cache and never racing another worker.
_CACHE = tempfile.mkdtemp(prefix="ranking_jax_test_cache_")
os.environ["RANKING_JAX_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
# One persistent XLA compilation cache for the whole session (the controller makes it; workers and the
# runs they start inherit it): the same model and step compiled by many tests compiles once.
if "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="ranking_jax_test_xla_")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    """../shared (read-only reference data and fixtures); tests that need it skip with the reason."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared is absent ({SHARED}); this test needs its data or fixtures")
    return SHARED


def pytest_configure(config):
    config.addinivalue_line("markers", "accelerator: needs a GPU/TPU; deselected on CPU")
    config.addinivalue_line("markers", "slow: takes more than ~30 s on 2 cores")


def pytest_collection_modifyitems(config, items):
    if jax.default_backend() == "cpu":
        skip = pytest.mark.skip(reason="needs an accelerator (GPU/TPU); jax backend is cpu")
        for item in items:
            if "accelerator" in item.keywords:
                item.add_marker(skip)
