"""The offline input-token estimate: rules, monotonicity, sane bounds, duck-typed inputs."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.core import tokens
from sidecar.core.tokens import IMAGE_TOKENS, estimate_input_tokens, text_tokens
from sidecar.wire.chat import ImagePart, Message, TextPart, Tool, ToolCall

PROSE = (
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs. "
    "How vexingly quick daft zebras jump! "
)


def _user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def test_text_rules() -> None:
    assert text_tokens("") == 0
    assert text_tokens("a") == 1
    assert text_tokens("abcd") == 1
    assert text_tokens("abcde") == 2
    assert text_tokens("你好世界") == 4  # one per CJK character
    assert text_tokens("こんにちは") == 5
    assert text_tokens("안녕하세요") == 5
    assert text_tokens("привет") == 3  # two characters per token
    assert text_tokens("hi 你好") == 1 + 2  # "hi " -> 1, plus 2 CJK


def test_empty_request_is_the_reply_priming() -> None:
    assert estimate_input_tokens([]) == tokens.REPLY_PRIMING


def test_one_short_message() -> None:
    # 3 priming + 4 per message + ceil(11 / 4)
    assert estimate_input_tokens([_user("hello world")]) == 3 + 4 + 3


def test_english_prose_is_about_four_characters_per_token() -> None:
    text = PROSE * 50
    n = estimate_input_tokens([_user(text)])
    assert len(text) / 4 <= n <= len(text) / 4 + 10
    # real tokenizers put English at 4-5 characters per token: the estimate is within +-25%
    assert len(text) / 5 * 0.75 <= n <= len(text) / 3.5 * 1.25


def test_monotonic_in_text_messages_parts_and_tools() -> None:
    previous = estimate_input_tokens([])
    messages: list[dict[str, Any]] = []
    for i in range(30):
        messages.append(_user(PROSE[: i * 3] + "你" * (i % 4)))
        current = estimate_input_tokens(messages)
        assert current > previous
        previous = current
    text = ""
    previous = estimate_input_tokens([_user(text)])
    for ch in "abc déf 漢字 ж e\u0301 🙂 end" * 3:
        text += ch
        current = estimate_input_tokens([_user(text)])
        assert current >= previous
        previous = current
    with_parts = estimate_input_tokens([_user([{"type": "text", "text": "look"}])])
    with_image = estimate_input_tokens(
        [_user([{"type": "text", "text": "look"}, {"type": "image", "url": "x"}])]
    )
    assert with_image == with_parts + IMAGE_TOKENS
    tool = {"name": "get_weather", "description": "Weather for a city", "parameters": {"type": "object"}}
    assert estimate_input_tokens(messages, [tool]) > estimate_input_tokens(messages)
    assert estimate_input_tokens(messages, [tool, tool]) > estimate_input_tokens(messages, [tool])


def test_images_cost_a_fixed_amount_whatever_their_data() -> None:
    small = [_user([{"type": "image", "data": "QUJD", "media_type": "image/png"}])]
    huge = [_user([{"type": "image", "data": "QUJD" * 100_000, "media_type": "image/png"}])]
    assert estimate_input_tokens(small) == estimate_input_tokens(huge) == 3 + 4 + IMAGE_TOKENS
    assert estimate_input_tokens(small, image_tokens=85) == 3 + 4 + 85


def test_tool_schemas_count_by_their_json() -> None:
    params = {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}}
    tool = {"name": "get_weather", "description": "", "parameters": params}
    bigger = {**tool, "parameters": {**params, "required": ["city"], "additionalProperties": False}}
    base = estimate_input_tokens([])
    one = estimate_input_tokens([], [tool])
    schema_json = '{"type":"object","properties":{"city":{"type":"string","description":"City name"}}}'
    expected = (
        tokens.TOOLS_OVERHEAD + tokens.TOOL_OVERHEAD + text_tokens("get_weather") + text_tokens(schema_json)
    )
    assert one - base == expected
    assert estimate_input_tokens([], [bigger]) > one
    assert estimate_input_tokens([], []) == base  # an empty tool list adds nothing


def test_tool_calls_and_results_count() -> None:
    call = {"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    result = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'}
    plain = estimate_input_tokens([_user("weather?")])
    assert estimate_input_tokens([_user("weather?"), assistant]) > plain + tokens.MESSAGE_OVERHEAD
    assert estimate_input_tokens([_user("weather?"), assistant, result]) > estimate_input_tokens(
        [_user("weather?"), assistant]
    )
    as_string = {**call, "arguments": '{"city":"Paris"}'}
    assert estimate_input_tokens([{"role": "assistant", "tool_calls": [as_string]}]) == estimate_input_tokens(
        [{"role": "assistant", "tool_calls": [call]}]
    )


def test_wire_structs_and_dicts_estimate_the_same() -> None:
    structs = [
        Message(role="system", content="You are terse."),
        Message(
            role="user", content=[TextPart(text="What is in this picture?"), ImagePart(url="https://x/y.png")]
        ),
        Message(
            role="assistant",
            content="Let me check.",
            tool_calls=[ToolCall(id="c1", name="lookup", arguments={"q": "cat"})],
        ),
        Message(role="tool", tool_call_id="c1", content="a cat", name="lookup"),
    ]
    dicts = [
        {"role": "system", "content": "You are terse."},
        _user(
            [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image", "url": "https://x/y.png"},
            ]
        ),
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [{"id": "c1", "name": "lookup", "arguments": {"q": "cat"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a cat", "name": "lookup"},
    ]
    struct_tools = [Tool(name="lookup", description="Look a word up", parameters={"type": "object"})]
    dict_tools = [{"name": "lookup", "description": "Look a word up", "parameters": {"type": "object"}}]
    assert estimate_input_tokens(structs, struct_tools) == estimate_input_tokens(dicts, dict_tools)


def test_unknown_parts_and_odd_values_do_not_fail() -> None:
    odd: list[Any] = [
        _user([{"type": "document", "source": {"kind": "text", "body": "x" * 40}}]),
        _user(["a bare string part"]),
        _user({"unexpected": "shape"}),
        {"role": "user"},
        _user([{"type": "text"}]),
        _user([{"type": "weird", "value": object()}]),
    ]
    n = estimate_input_tokens(odd)
    assert n > tokens.REPLY_PRIMING + len(odd) * tokens.MESSAGE_OVERHEAD


@pytest.mark.parametrize("text", ["", "x", PROSE, "混合 mixed テキスト", "ünïcödé" * 20])
def test_deterministic_and_never_below_overheads(text: str) -> None:
    messages = [_user(text), {"role": "assistant", "content": text}]
    first = estimate_input_tokens(messages)
    assert first == estimate_input_tokens(messages)
    assert first >= tokens.REPLY_PRIMING + 2 * tokens.MESSAGE_OVERHEAD
    assert first <= tokens.REPLY_PRIMING + 2 * tokens.MESSAGE_OVERHEAD + 2 * len(text)


def test_accepts_any_iterable() -> None:
    messages = (_user("hi") for _ in range(3))
    assert estimate_input_tokens(messages) == 3 + 3 * (4 + 1)
