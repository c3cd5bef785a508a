"""Every test runs on a real multi-device mesh: JAX sees 8 CPU devices, set before the backend starts."""

import os
import pathlib

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
