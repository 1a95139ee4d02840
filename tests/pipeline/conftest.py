import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "prompts"))  # the tiny GGUF writer lives with the provider tests


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    from tiny_gguf import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")
