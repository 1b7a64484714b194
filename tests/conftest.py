import os

import pytest

# Before Prefect is imported anywhere: its temporary server starts slowly on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


@pytest.fixture(autouse=True, scope="module")
def stop_engines_after_each_module():
    """A vLLM engine lives as long as the process that started it: in the test process, stop it when the
    module that needed it is done, or it holds gigabytes and a core through the rest of the suite."""
    yield
    from wow_core import engines
    engines.stop_all()
