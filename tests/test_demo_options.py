"""`vibe demo` options: defaults, --quick, bad values, which canary gets the base template."""

from __future__ import annotations

import pytest
from vibesdk_server._vibe.demo import _is_base_gemma, parse_args


def test_defaults_and_quick() -> None:
    """200 users, 6 at a time by default; --quick is 20 users, 4 at a time, 16-token answers."""
    full = parse_args([])
    assert (full.users, full.concurrency, full.max_tokens, full.kill_canary) == (200, 6, None, True)
    quick = parse_args(["--quick"])
    assert (quick.users, quick.concurrency, quick.max_tokens) == (20, 4, 16)
    assert parse_args(["--quick", "--users", "50", "--no-kill"]).users == 50
    assert parse_args(["--no-kill"]).kill_canary is False
    assert (full.clean, parse_args(["--clean"]).clean) == (False, True)
    # The guarded release's steps are short so the story fits in CI: 20 s, 10 s with --quick.
    assert (full.dwell_s, quick.dwell_s, parse_args(["--dwell", "3"]).dwell_s) == (20, 10, 3)
    assert full.flags_file.name == "flags.yaml"
    assert full.flags_file.is_file()


@pytest.mark.parametrize(
    "argv",
    [["--users", "2"], ["--concurrency", "0"], ["--dwell", "-1"], ["--dwell", "1h"], ["--bogus"]],
)
def test_bad_options_are_usage_errors(argv: list[str]) -> None:
    """Too few users, no concurrency or an unknown option exit with argparse's usage error."""
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


def test_only_the_base_gemma_gets_the_completion_template() -> None:
    """Gemma 3 270M (name or file) has no chat template; a real VibeThinker GGUF keeps its own."""
    assert _is_base_gemma("gemma3-270m")
    assert _is_base_gemma("/models/gemma-3-270m-q4_k_m.gguf")
    assert not _is_base_gemma("vibethinker")
    assert not _is_base_gemma("/models/VibeThinker-1.5B.Q8_0.gguf")
    assert not _is_base_gemma("smollm2")
