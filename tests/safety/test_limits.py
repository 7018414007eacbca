import io

import pytest
from transformers import GPT2Config, LlamaConfig

from omnifuse.errors import UsageError
from omnifuse.safety.limits import (
    InputLimitError,
    bounded_lines,
    check_count,
    check_messages,
    check_prompt_tokens,
    max_positions_of,
    max_record_bytes,
)


def test_bounded_lines_reports_long_lines_by_size_without_keeping_them():
    data = b"short\n" + b"x" * 100 + b"\n" + b"abcd\n" + b"tail"
    assert list(bounded_lines(io.BytesIO(data), max_bytes=5)) == [
        (1, b"short\n"),
        (2, 101),
        (3, b"abcd\n"),
        (4, b"tail"),
    ]


def test_bounded_lines_long_last_line_without_newline():
    assert list(bounded_lines(io.BytesIO(b"a\n" + b"y" * 50), max_bytes=8)) == [(1, b"a\n"), (2, 50)]


def test_check_messages_counts_characters_over_all_text_parts():
    parts = [{"type": "text", "text": "abc"}, {"type": "image", "path": "x.png"}, {"type": "text", "text": "de"}]
    check_messages([{"role": "user", "content": parts}], max_chars=5)
    with pytest.raises(InputLimitError, match="6 characters, over the limit of 5"):
        check_messages([{"role": "user", "content": parts}, {"role": "assistant", "content": "f"}], max_chars=5)


def test_a_turn_without_content_is_allowed():
    check_messages([{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}, {"role": "tool"}], 5)


@pytest.mark.parametrize("role", ["user", "assistant", "system", "tool", "function_call-2"])
def test_ordinary_roles_pass(role):
    check_messages([{"role": role, "content": "hi"}], max_chars=10)


def test_prompt_tokens_and_positions():
    check_prompt_tokens(512, 512)
    check_prompt_tokens(10**6, None)
    with pytest.raises(InputLimitError, match="513 tokens, over the model's 512 positions"):
        check_prompt_tokens(513, 512)
    assert max_positions_of(LlamaConfig(max_position_embeddings=2048)) == 2048
    assert max_positions_of(GPT2Config(n_positions=1024)) == 1024
    assert max_positions_of({"max_position_embeddings": 77}) == 77 and max_positions_of({}) is None


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3"])
def test_check_count_refuses_non_positive_integers(value):
    with pytest.raises(UsageError, match="must be a positive integer"):
        check_count("batch_size", value)


def test_check_count_accepts_none_only_when_allowed():
    check_count("limit", None, allow_none=True)
    with pytest.raises(UsageError):
        check_count("limit", None)


def test_record_bytes_from_the_environment(monkeypatch):
    monkeypatch.delenv("OMNIFUSE_MAX_RECORD_BYTES", raising=False)
    assert max_record_bytes() == 16 * 2**20
    monkeypatch.setenv("OMNIFUSE_MAX_RECORD_BYTES", "2048")
    assert max_record_bytes() == 2048
    monkeypatch.setenv("OMNIFUSE_MAX_RECORD_BYTES", "lots")
    with pytest.raises(UsageError, match="OMNIFUSE_MAX_RECORD_BYTES"):
        max_record_bytes()
