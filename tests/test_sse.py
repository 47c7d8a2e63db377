"""Server-sent events and streamed replies: the decoder and StreamState, with no network."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfbatch.errors import BadRequestError, MalformedResponseError, ServerError
from hfbatch.sse import DONE, SSEDecoder
from hfbatch.wire import ChatResult, StreamState


def decode(*chunks: bytes) -> list[str]:
    """Every payload of a stream fed in these chunks, including the unterminated last line."""
    decoder = SSEDecoder()
    out: list[str] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.close())
    return out


# --- SSEDecoder ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "payloads"),
    [
        pytest.param(b'data: {"a":1}\n\n', ['{"a":1}'], id="data-with-space"),
        pytest.param(b'data:{"a":1}\n\n', ['{"a":1}'], id="data-without-space"),
        pytest.param(b"data:  two spaces\n\n", [" two spaces"], id="only-one-space-stripped"),
        pytest.param(b"data: a\r\n\r\ndata: b\r\n\r\n", ["a", "b"], id="crlf"),
        pytest.param(b"data: a\r\rdata: b\r\r", ["a", "b"], id="bare-cr"),
        pytest.param(b": keep-alive\n\ndata: a\n\n", ["a"], id="comment"),
        pytest.param(b"event: message\nid: 7\nretry: 100\ndata: a\n\n", ["a"], id="event-id-retry-lines"),
        pytest.param(b"data: \n\ndata:\n\ndata: a\n\n", ["a"], id="blank-data-skipped"),
        pytest.param(b"data: a\n\ndata: [DONE]\n\n", ["a", DONE], id="done"),
        pytest.param(b"data: a\n\ndata: [DONE]", ["a", DONE], id="no-trailing-newline"),
        pytest.param(b"data: a\ndata: b\n", ["a", "b"], id="single-newlines"),
        pytest.param("data: héllo ✓\n\n".encode(), ["héllo ✓"], id="utf8"),
        pytest.param(b"", [], id="empty"),
        pytest.param(b"\n\n\n", [], id="only-blank-lines"),
        pytest.param(b"datum: x\n\n", [], id="not-a-data-field"),
    ],
)
def test_decoder(stream: bytes, payloads: list[str]) -> None:
    """Each `data:` line gives its payload; everything else is skipped."""
    assert decode(stream) == payloads


def test_decoder_holds_partial_lines() -> None:
    """A line split across chunks is only returned once complete."""
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a"') == []
    assert decoder.feed(b":1}") == []
    assert decoder.feed(b"\n\ndata: [DO") == ['{"a":1}']
    assert decoder.feed(b"NE]\n\n") == [DONE]
    assert decoder.close() == []


def test_decoder_crlf_split_between_cr_and_lf() -> None:
    """A CRLF split across two chunks is one line end, not a blank line plus a line."""
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r\n") == ["a", "b"]
    assert decoder.close() == []


def test_decoder_utf8_split_inside_a_character() -> None:
    """A multi-byte character split across chunks decodes whole."""
    raw = "data: ✓\n".encode()
    assert decode(raw[:7], raw[7:]) == ["✓"]


def test_decoder_close_resets() -> None:
    """After close(), the decoder starts afresh."""
    decoder = SSEDecoder()
    decoder.feed(b"data: x")
    assert decoder.close() == ["x"]
    assert decoder.close() == []


JSON_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
PAYLOADS = st.lists(
    st.one_of(
        st.builds(lambda t: json.dumps({"choices": [{"delta": {"content": t}}]}, ensure_ascii=False), JSON_TEXT),
        st.just(DONE),
    ),
    min_size=1,
    max_size=8,
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[str]]:
    """A valid SSE stream in one of the dialects servers use, and the payloads it carries."""
    payloads = draw(PAYLOADS)
    eol = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    space = draw(st.booleans())
    parts: list[bytes] = []
    for p in payloads:
        if draw(st.booleans()):
            parts.append(b": comment" + eol)
        if draw(st.booleans()):
            parts.append(b"event: message" + eol)
        parts.append(b"data:" + (b" " if space else b"") + p.encode() + eol + eol)
    raw = b"".join(parts)
    if draw(st.booleans()):
        raw = raw.rstrip(b"\r\n")  # some servers end without a final newline
    return raw, payloads


@given(case=streams(), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_decoder_any_split_gives_the_same_payloads(case: tuple[bytes, list[str]], cuts: list[int]) -> None:
    """However the bytes are split into chunks, the same payloads come out in the same order."""
    raw, payloads = case
    points = sorted({c % (len(raw) + 1) for c in cuts})
    chunks = [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True)]
    assert decode(raw) == payloads
    assert decode(*chunks) == payloads
    assert decode(*(raw[i : i + 1] for i in range(len(raw)))) == payloads


# --- StreamState -----------------------------------------------------------------------------


def chunk(content: str | None = None, finish: str | None = None, usage: Any = None, **extra: Any) -> str:
    """One OpenAI-style chunk payload."""
    delta: dict[str, Any] = {} if content is None else {"content": content}
    data: dict[str, Any] = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    if usage is not None:
        data["usage"] = usage
    return json.dumps(data)


USAGE = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
USAGE_ONLY = json.dumps({"choices": [], "usage": USAGE})


def run(*payloads: str) -> ChatResult:
    state = StreamState("p", "o/m")
    text = "".join(state.feed(p) for p in payloads)
    return state.finish(text)


@pytest.mark.parametrize(
    "payloads",
    [
        pytest.param(
            [chunk("Both"), chunk(" Rust"), chunk(finish="stop"), USAGE_ONLY, DONE], id="usage-only-chunk-after-finish"
        ),
        pytest.param([chunk("Both"), chunk(" Rust"), chunk(finish="stop", usage=USAGE), DONE], id="usage-in-finish"),
        pytest.param([chunk("Both"), chunk(" Rust", finish="stop", usage=USAGE)], id="no-done-with-finish-reason"),
        pytest.param(
            [chunk("Both", usage=None), chunk(" Rust"), chunk(finish="stop"), USAGE_ONLY], id="no-done-usage-after"
        ),
    ],
)
def test_stream_state_reads_text_finish_and_usage(payloads: list[str]) -> None:
    """Text deltas add up; finish reason and usage are read wherever the server puts them."""
    result = run(*payloads)
    assert (result.text, result.finish_reason) == ("Both Rust", "stop")
    assert (result.prompt_tokens, result.completion_tokens) == (9, 2)
    assert (result.provider, result.model) == ("p", "o/m")


def test_stream_state_null_usage_chunks_do_not_erase_usage() -> None:
    """With include_usage, chunks carry `"usage": null`; only the real usage counts."""
    state = StreamState("p", "m")
    state.feed(json.dumps({"choices": [{"delta": {"content": "a"}, "finish_reason": None}], "usage": None}))
    state.feed(chunk(finish="length"))
    state.feed(USAGE_ONLY)
    state.feed(json.dumps({"choices": [], "usage": None}))
    result = state.finish("a")
    assert (result.finish_reason, result.prompt_tokens, result.completion_tokens) == ("length", 9, 2)


def test_stream_state_done_flag() -> None:
    """[DONE] marks the stream done and adds no text."""
    state = StreamState("p", "m")
    assert state.feed(chunk("hi")) == "hi"
    assert not state.done
    assert state.feed(DONE) == ""
    assert state.done


def test_stream_state_done_without_finish_reason_is_complete() -> None:
    """A stream closed by [DONE] is complete even if no chunk named a finish reason."""
    result = run(chunk("hi"), DONE)
    assert (result.text, result.finish_reason, result.prompt_tokens) == ("hi", None, None)


@pytest.mark.parametrize(
    "payloads",
    [
        pytest.param([chunk("Both"), chunk(" Rust")], id="cut-after-text"),
        pytest.param([], id="nothing-at-all"),
        pytest.param([USAGE_ONLY], id="usage-but-no-finish"),
    ],
)
def test_stream_state_ending_with_neither_done_nor_finish_is_malformed(payloads: list[str]) -> None:
    """A stream that stops with no [DONE] and no finish reason was cut short."""
    with pytest.raises(MalformedResponseError) as info:
        run(*payloads)
    assert info.value.provider == "p"


@pytest.mark.parametrize(
    ("payload", "cls", "message"),
    [
        pytest.param(
            json.dumps({"error": "Input validation error: too long", "error_type": "validation"}),
            BadRequestError,
            "Input validation error: too long",
            id="validation",
        ),
        pytest.param(
            json.dumps({"error": "Model is overloaded", "error_type": "overloaded"}),
            ServerError,
            "Model is overloaded",
            id="overloaded",
        ),
        pytest.param(
            json.dumps({"error": {"message": "upstream died", "code": 500}}),
            ServerError,
            "upstream died",
            id="error-object",
        ),
        pytest.param(json.dumps({"error": "generation failed"}), ServerError, "generation failed", id="no-type"),
    ],
)
def test_stream_state_in_stream_error(payload: str, cls: type[Exception], message: str) -> None:
    """An error sent inside the stream raises; a validation error is the request's fault."""
    state = StreamState("p", "m")
    state.feed(chunk("partial"))
    with pytest.raises(cls, match=message) as info:
        state.feed(payload)
    assert getattr(info.value, "provider", None) == "p"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("{not json", id="not-json"),
        pytest.param("[1, 2]", id="not-an-object"),
        pytest.param('"text"', id="a-string"),
    ],
)
def test_stream_state_malformed_chunk(payload: str) -> None:
    """A chunk that is not a JSON object is malformed."""
    with pytest.raises(MalformedResponseError):
        StreamState("p", "m").feed(payload)


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        pytest.param(json.dumps({"choices": [{"delta": {"role": "assistant"}}]}), "", id="role-only"),
        pytest.param(json.dumps({"choices": [{"delta": {"content": None}}]}), "", id="null-content"),
        pytest.param(json.dumps({"choices": [{"delta": {}}]}), "", id="empty-delta"),
        pytest.param(json.dumps({"choices": [{"message": {"content": "whole"}}]}), "whole", id="message-not-delta"),
        pytest.param(
            json.dumps({"choices": [{"delta": {"content": [{"type": "text", "text": "pa"}, {"text": "rts"}]}}]}),
            "parts",
            id="content-parts",
        ),
        pytest.param(json.dumps({"choices": ["junk", {"delta": {"content": "ok"}}]}), "ok", id="junk-choice-skipped"),
        pytest.param(json.dumps({"id": "x"}), "", id="no-choices"),
    ],
)
def test_stream_state_delta_shapes(payload: str, text: str) -> None:
    """Text is read from the delta (or a whole message) in any of its shapes."""
    assert StreamState("p", "m").feed(payload) == text
