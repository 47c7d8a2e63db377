"""Messages: their length, trimming to a budget without losing what matters, and image parts."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfbatch import defaults
from hfbatch.client import HuggingFaceAPI
from hfbatch.errors import InputError
from hfbatch.messages import MediaItem, Message, attach_media, calculate_length, media_url, trim_messages

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
GIF = b"GIF89a" + b"\x00" * 8
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 8
OVERHEAD = defaults.MESSAGE_OVERHEAD


def msg(role: str, content: Any) -> Message:
    return {"role": role, "content": content}


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# --- calculate_length ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "length"),
    [
        pytest.param([], 0, id="none"),
        pytest.param([msg("user", "hello")], 5 + OVERHEAD, id="str"),
        pytest.param([msg("user", "")], OVERHEAD, id="empty-str"),
        pytest.param([msg("assistant", None)], OVERHEAD, id="none-content"),
        pytest.param([msg("system", "ab"), msg("user", "cde")], 5 + 2 * OVERHEAD, id="two"),
        pytest.param(
            [msg("user", [{"type": "text", "text": "abc"}, {"type": "text", "text": "de"}])],
            5 + OVERHEAD,
            id="list-of-text",
        ),
        pytest.param(
            [
                msg(
                    "user",
                    [
                        {"type": "image_url", "image_url": {"url": data_uri("image/png", PNG * 100)}},
                        {"type": "text", "text": "what?"},
                    ],
                )
            ],
            5 + OVERHEAD,
            id="list-counts-text-only",
        ),
        pytest.param([{"role": "user"}], OVERHEAD, id="no-content-key"),
    ],
)
def test_calculate_length(messages: list[Message], length: int) -> None:
    """Characters of text content plus 16 per message; images do not count."""
    assert calculate_length(messages) == length
    assert HuggingFaceAPI.calculate_length(messages) == length


# --- trim_messages ---------------------------------------------------------------------------


def test_trim_under_budget_returns_a_copy() -> None:
    """A prompt within budget comes back whole, as a new list."""
    messages = [msg("system", "s"), msg("user", "hi")]
    out = trim_messages(messages, 10_000)
    assert out == messages and out is not messages


@pytest.mark.parametrize(
    ("lengths", "budget", "kept"),
    [
        # roles: S = system, U = user, A = assistant; each content is "x" * length
        pytest.param("S10 U10 A10 U10", 4 * (10 + OVERHEAD), "S U A U", id="exactly-at-budget"),
        pytest.param("S10 U10 A10 U10", 4 * (10 + OVERHEAD) - 1, "S A U", id="drops-one-oldest"),
        pytest.param("S10 U10 A10 U10", 3 * (10 + OVERHEAD) - 1, "S U", id="drops-two"),
        pytest.param("S10 U10 A10 U10", 1, "S U", id="keeps-system-and-last-over-budget"),
        pytest.param("U10 S10 A10 U10", 3 * (10 + OVERHEAD), "S A U", id="system-in-the-middle-kept"),
        pytest.param("U100 A1 U1 A1 U1", 4 * (1 + OVERHEAD), "A U A U", id="drops-only-the-big-oldest"),
        pytest.param("U1 A100 U1", 2 * (1 + OVERHEAD), "U", id="drops-until-fits"),
        pytest.param("U1 A100 U1", 2 * (1 + OVERHEAD) + 100, "A U", id="drops-the-oldest-even-if-small"),
        pytest.param("U1 A100 U1", 3 * (1 + OVERHEAD) + 100, "U A U", id="fits-nothing-dropped"),
        pytest.param("U5000", 10, "U", id="single-message-kept-whole"),
        pytest.param("S10 S10 U10", 1, "S S U", id="only-system-and-last"),
        pytest.param("U10 A10 S10", 1, "S", id="last-is-system"),
    ],
)
def test_trim_messages(lengths: str, budget: int, kept: str) -> None:
    """Oldest droppable messages go first, no more than needed; system and last messages stay."""
    roles = {"S": "system", "U": "user", "A": "assistant"}
    messages = [msg(roles[t[0]], f"{i}" + "x" * (int(t[1:]) - 1)) for i, t in enumerate(lengths.split())]
    before = copy.deepcopy(messages)
    out = trim_messages(messages, budget)
    assert " ".join(k for m in out for k, r in roles.items() if r == m["role"]) == kept
    assert messages == before
    assert out[-1] is messages[-1]
    # Content is never cut: every kept message is one of the originals, unchanged and in order.
    positions = [next(i for i, m in enumerate(messages) if m is k) for k in out]
    assert positions == sorted(positions)
    assert all(k == before[i] for k, i in zip(out, positions, strict=True))


def test_trim_seed_worked_example() -> None:
    """The worked example [S,U1,A1,U2,A2,U3,A3,U4] under a tiny budget keeps [S, U4]."""
    names = ["S", "U1", "A1", "U2", "A2", "U3", "A3", "U4"]
    messages = [msg("system" if n == "S" else "user" if n[0] == "U" else "assistant", n * 50) for n in names]
    assert [m["content"][:2] for m in trim_messages(messages, 100)] == ["SS", "U4"]


def test_trim_does_not_mutate_list_content() -> None:
    """Messages whose content is a list of parts are kept as they were."""
    parts = [{"type": "text", "text": "a" * 50}]
    messages = [msg("user", parts), msg("assistant", "b" * 50), msg("user", "c")]
    before = copy.deepcopy(messages)
    out = trim_messages(messages, 2 * OVERHEAD + 50 + 1)
    assert messages == before
    assert out == [messages[1], messages[2]]


ROLES = st.sampled_from(["system", "user", "assistant"])
MESSAGES = st.lists(
    st.builds(msg, ROLES, st.text(alphabet="ab ", max_size=40)),
    min_size=1,
    max_size=12,
)
BUDGETS = st.integers(min_value=0, max_value=400)


@given(messages=MESSAGES, budget=BUDGETS)
def test_trim_property_keeps_last_and_system(messages: list[Message], budget: int) -> None:
    """The last message and every system message survive, in their original order."""
    out = trim_messages(messages, budget)
    assert out[-1] is messages[-1]
    systems = [m for m in messages if m["role"] == "system"]
    assert [m for m in out if m["role"] == "system" and m is not messages[-1]] == [
        m for m in systems if m is not messages[-1]
    ]


@given(messages=MESSAGES, budget=BUDGETS)
def test_trim_property_drops_oldest_and_no_more_than_needed(messages: list[Message], budget: int) -> None:
    """Dropped messages are the oldest droppable ones, and dropping stops as soon as the prompt fits."""
    out = trim_messages(messages, budget)
    kept_ids = {id(m) for m in out}
    # Order kept; only original objects.
    positions = [i for i, m in enumerate(messages) if id(m) in kept_ids]
    assert [messages[i] for i in positions] == out
    droppable = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
    dropped = [i for i in droppable if id(messages[i]) not in kept_ids]
    assert dropped == droppable[: len(dropped)]  # a prefix: oldest first
    if calculate_length(out) > budget:
        # Over budget only when nothing else could go: system messages and the last one.
        assert all(m["role"] == "system" for m in out[:-1])
    if dropped:
        # Keeping the last-dropped message would have been over budget.
        restored = messages[dropped[-1]]
        assert calculate_length([*out, restored]) > budget
    if calculate_length(messages) <= budget:
        assert out == messages


@given(messages=MESSAGES, budget=BUDGETS)
def test_trim_property_never_mutates(messages: list[Message], budget: int) -> None:
    """The caller's list and messages are unchanged, and the result is a new list."""
    before = copy.deepcopy(messages)
    out = trim_messages(messages, budget)
    assert messages == before
    assert out is not messages
    assert all(m in before for m in out)


# --- media -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        pytest.param(PNG, "image/png", id="png"),
        pytest.param(JPEG, "image/jpeg", id="jpeg"),
        pytest.param(GIF, "image/gif", id="gif"),
        pytest.param(WEBP, "image/webp", id="webp"),
    ],
)
def test_media_url_sniffs_local_files_and_bytes(tmp_path: Path, data: bytes, mime: str) -> None:
    """A local file (str or Path) or raw bytes become a data URI whose mime comes from the magic bytes."""
    path = tmp_path / "image.bin"  # the extension says nothing: the content decides
    path.write_bytes(data)
    expected = data_uri(mime, data)
    assert media_url(str(path)) == expected
    assert media_url(path) == expected
    assert media_url(data) == expected


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://example.com/cat.png", id="https"),
        pytest.param("http://example.com/cat.png", id="http"),
        pytest.param(data_uri("image/png", PNG), id="data-uri"),
    ],
)
def test_media_url_passes_urls_through(url: str) -> None:
    """URLs and data URIs are sent as they are."""
    assert media_url(url) == url


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param((b"unknown-bytes", "photo.webp"), data_uri("image/webp", b"unknown-bytes"), id="bytes-named"),
        pytest.param((b"unknown-bytes", None), data_uri("application/octet-stream", b"unknown-bytes"), id="unnamed"),
        pytest.param((PNG, "wrong.jpg"), data_uri("image/png", PNG), id="magic-beats-name"),
        pytest.param(("https://example.com/a.png", "a.png"), "https://example.com/a.png", id="url-named"),
    ],
)
def test_media_url_tuple_with_filename(item: MediaItem, expected: str) -> None:
    """A (data, filename) tuple: the magic bytes decide the mime, else the file name does."""
    assert media_url(item) == expected


def test_media_url_tuple_with_local_path(tmp_path: Path) -> None:
    """A (path, filename) tuple reads the file; the given name guides the mime for unknown content."""
    path = tmp_path / "blob"
    path.write_bytes(b"not an image header")
    assert media_url((path, "x.gif")) == data_uri("image/gif", b"not an image header")
    assert media_url((str(path), None)) == data_uri("application/octet-stream", b"not an image header")


def test_media_url_missing_file_names_it(tmp_path: Path) -> None:
    """A missing file raises InputError naming the path."""
    missing = tmp_path / "nope.png"
    with pytest.raises(InputError, match=r"nope\.png"):
        media_url(str(missing))


def test_attach_media_builds_image_parts_before_text(tmp_path: Path) -> None:
    """Images go on the last message as image_url parts, then its text; the caller's list is untouched."""
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    messages = [msg("system", "Be terse."), msg("user", "What is it?")]
    before = copy.deepcopy(messages)
    out = attach_media(messages, [str(path), "https://example.com/dog.jpg"])
    assert messages == before
    assert out is not messages and out[0] is messages[0]
    assert out[-1] == {
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": data_uri("image/png", PNG)}},
            {"type": "image_url", "image_url": {"url": "https://example.com/dog.jpg"}},
            {"type": "text", "text": "What is it?"},
        ],
    }


def test_attach_media_keeps_existing_parts() -> None:
    """A last message that already has parts keeps them, after the new images, unmutated."""
    parts = [{"type": "text", "text": "describe"}]
    messages = [msg("user", parts)]
    before = copy.deepcopy(messages)
    out = attach_media(messages, [JPEG])
    assert messages == before
    assert out[-1]["content"] == [{"type": "image_url", "image_url": {"url": data_uri("image/jpeg", JPEG)}}, *parts]


@pytest.mark.parametrize(
    ("messages", "media"),
    [
        pytest.param([], [PNG], id="no-messages"),
        pytest.param([msg("user", "x")], [], id="no-media"),
    ],
)
def test_attach_media_nothing_to_do(messages: list[Message], media: list[MediaItem]) -> None:
    """With no messages or no media, a copy of the messages comes back."""
    out = attach_media(messages, media)
    assert out == messages and out is not messages


def test_attach_media_empty_content_gets_no_text_part() -> None:
    """An empty last message carries only the images."""
    out = attach_media([msg("user", "")], [PNG])
    assert out[-1]["content"] == [{"type": "image_url", "image_url": {"url": data_uri("image/png", PNG)}}]


def test_attach_media_missing_file_leaves_caller_alone(tmp_path: Path) -> None:
    """A missing image raises InputError naming it, and the caller's messages stay as they were."""
    messages = [msg("user", "look")]
    before = copy.deepcopy(messages)
    with pytest.raises(InputError, match=r"gone\.jpg"):
        attach_media(messages, [tmp_path / "gone.jpg"])
    assert messages == before
