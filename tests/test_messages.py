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
from hfbatch.media import LocalImages, MediaItem, image_url, image_urls
from hfbatch.messages import Message, attach_images, calculate_length, trim_messages

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
GIF = b"GIF89a" + b"\x00" * 8
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 8
BMP = b"BM" + b"\x00" * 12 + (40).to_bytes(4, "little") + b"\x00" * 36
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
        # roles: S = system, U = user, A = assistant; each content is "x" * length.
        # "U:7": the last message, its text cut to its first 7 characters.
        pytest.param("S10 U10 A10 U10", 4 * (10 + OVERHEAD), "S U A U", id="exactly-at-budget"),
        pytest.param("S10 U10 A10 U10", 4 * (10 + OVERHEAD) - 1, "S A U", id="drops-one-oldest"),
        pytest.param("S10 U10 A10 U10", 3 * (10 + OVERHEAD) - 1, "S U", id="drops-two"),
        pytest.param("S10 U10 A10 U10", 2 * (10 + OVERHEAD) - 3, "S U:7", id="then-cuts-the-last"),
        pytest.param("S10 U10 A10 U10", 1, "S U:0", id="system-alone-over-budget-last-emptied"),
        pytest.param("U10 S10 A10 U10", 3 * (10 + OVERHEAD), "S A U", id="system-in-the-middle-kept"),
        pytest.param("U100 A1 U1 A1 U1", 4 * (1 + OVERHEAD), "A U A U", id="drops-only-the-big-oldest"),
        pytest.param("U1 A100 U1", 2 * (1 + OVERHEAD), "U", id="drops-until-fits"),
        pytest.param("U1 A100 U1", 2 * (1 + OVERHEAD) + 100, "A U", id="drops-the-oldest-even-if-small"),
        pytest.param("U1 A100 U1", 3 * (1 + OVERHEAD) + 100, "U A U", id="fits-nothing-dropped"),
        pytest.param("U5000", 100, "U:84", id="single-long-message-cut"),
        pytest.param("U5000", 10, "U:0", id="single-message-no-room"),
        pytest.param("A10 U5000", 100, "U:84", id="older-dropped-before-cutting"),
        pytest.param("S10 S10 U10", 1, "S S U:0", id="only-system-and-last"),
        pytest.param("S10 S10 U10", 2 * (10 + OVERHEAD) + OVERHEAD + 4, "S S U:4", id="cut-after-systems"),
        pytest.param("U10 A10 S10", OVERHEAD + 3, "S:3", id="last-is-system-and-is-cut"),
    ],
)
def test_trim_messages(lengths: str, budget: int, kept: str) -> None:
    """Oldest droppable messages go first, no more than needed; then the last message's start is kept."""
    roles = {"S": "system", "U": "user", "A": "assistant"}
    messages = [msg(roles[t[0]], f"{i}" + "x" * (int(t[1:]) - 1)) for i, t in enumerate(lengths.split())]
    before = copy.deepcopy(messages)
    out = trim_messages(messages, budget)
    *older, last = kept.split()
    role, _, cut = last.partition(":")
    assert [k for m in out for k, r in roles.items() if r == m["role"]] == [*older, role]
    assert messages == before
    if cut:
        assert out[-1] == {**messages[-1], "content": messages[-1]["content"][: int(cut)]}
    else:
        assert out[-1] is messages[-1]
    # Every kept message but the last is one of the originals, unchanged and in order.
    positions = [next(i for i, m in enumerate(messages) if m is k) for k in out[:-1]]
    assert positions == sorted(positions)
    assert all(k == before[i] for k, i in zip(out[:-1], positions, strict=True))


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


IMAGE_PART = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        pytest.param(12, ["ab", IMAGE_PART, "cdefghij", "kl"], id="fits"),
        pytest.param(7, ["ab", IMAGE_PART, "cdefg"], id="cut-inside-the-second-part"),
        pytest.param(2, ["ab", IMAGE_PART], id="cut-at-a-part-boundary"),
        pytest.param(1, ["a", IMAGE_PART], id="cut-inside-the-first-part"),
        pytest.param(0, [IMAGE_PART], id="no-text-left-image-stays"),
    ],
)
def test_trim_cuts_text_parts_in_order_and_keeps_images(keep: int, expected: list[Any]) -> None:
    """In a list of parts, text is cut from the end; text parts emptied go; images always stay."""
    parts = [
        {"type": "text", "text": "ab"},
        IMAGE_PART,
        {"type": "text", "text": "cdefghij"},
        {"type": "text", "text": "kl"},
    ]
    messages = [msg("user", parts)]
    before = copy.deepcopy(messages)
    (out,) = trim_messages(messages, OVERHEAD + keep)
    assert [p if p is IMAGE_PART else p["text"] for p in out["content"]] == expected
    assert messages == before


def test_trim_all_text_parts_gone_leaves_one_empty_part() -> None:
    """A list of text parts cut to nothing stays a list with one empty text part, not an empty list."""
    messages = [msg("user", [{"type": "text", "text": "abc"}, {"type": "text", "text": "def"}])]
    assert trim_messages(messages, 1) == [msg("user", [{"type": "text", "text": ""}])]


def test_trim_ignores_text_that_is_not_a_string() -> None:
    """A part whose 'text' is not a string counts for nothing and is kept as it is (it cannot crash a run)."""
    odd = {"type": "text", "text": 12345}
    messages = [msg("user", [odd, {"type": "text", "text": "x" * 100}])]
    assert calculate_length(messages) == 100 + OVERHEAD
    (out,) = trim_messages(messages, OVERHEAD + 10)
    assert out["content"] == [odd, {"type": "text", "text": "x" * 10}]


ROLES = st.sampled_from(["system", "user", "assistant"])
TEXT = st.text(alphabet="ab ", max_size=40)
PART = st.one_of(st.builds(lambda t: {"type": "text", "text": t}, TEXT), st.just(IMAGE_PART))
CONTENT = st.one_of(TEXT, st.lists(PART, max_size=4))
MESSAGES = st.lists(st.builds(msg, ROLES, CONTENT), min_size=1, max_size=12)
BUDGETS = st.integers(min_value=0, max_value=400)


def text_of(message: Message) -> str:
    """A message's text: its string content, or its text parts joined."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(p["text"] for p in content if p is not IMAGE_PART)


def floor_of(messages: list[Message]) -> int:
    """The shortest a trimmed prompt can be: the other system messages whole, and the last one's overhead."""
    systems = [m for m in messages[:-1] if m["role"] == "system"]
    return calculate_length(systems) + OVERHEAD


@given(messages=MESSAGES, budget=BUDGETS)
def test_trim_property_fits_whenever_possible(messages: list[Message], budget: int) -> None:
    """The result fits the budget unless the system messages alone leave no room; it never cuts more than needed."""
    out = trim_messages(messages, budget)
    if floor_of(messages) <= budget:
        assert calculate_length(out) <= budget
        if out[-1] is not messages[-1]:
            assert calculate_length(out) == budget  # cut exactly to the budget
    else:
        assert text_of(out[-1]) == ""
        assert calculate_length(out) == floor_of(messages)


@given(messages=MESSAGES, budget=BUDGETS)
def test_trim_property_keeps_last_and_system(messages: list[Message], budget: int) -> None:
    """The last message stays, its start and its images kept; every other system message stays whole, in order."""
    out = trim_messages(messages, budget)
    last, original = out[-1], messages[-1]
    assert last["role"] == original["role"]
    assert text_of(original).startswith(text_of(last))
    if isinstance(original["content"], list):
        assert [p for p in last["content"] if p is IMAGE_PART] == [p for p in original["content"] if p is IMAGE_PART]
    systems = [m for m in messages[:-1] if m["role"] == "system"]
    assert [m for m in out[:-1] if m["role"] == "system"] == systems
    assert all(any(m is s for m in out) for s in systems)


@given(messages=MESSAGES, budget=BUDGETS)
def test_trim_property_drops_oldest_and_no_more_than_needed(messages: list[Message], budget: int) -> None:
    """Older messages go oldest first and only while over budget; the last is cut only when nothing else can go."""
    out = trim_messages(messages, budget)
    kept_ids = {id(m) for m in out[:-1]}
    positions = [i for i, m in enumerate(messages[:-1]) if id(m) in kept_ids]
    assert [messages[i] for i in positions] == out[:-1]  # order kept; only original objects
    droppable = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
    dropped = [i for i in droppable if id(messages[i]) not in kept_ids]
    assert dropped == droppable[: len(dropped)]  # a prefix: oldest first
    if dropped:
        # Keeping the last-dropped message would have been over budget.
        assert calculate_length([*out[:-1], messages[dropped[-1]], messages[-1]]) > budget
    if out[-1] is not messages[-1]:
        assert dropped == droppable  # cut only after every droppable message went
    if calculate_length(messages) <= budget:
        assert out == messages


@given(messages=MESSAGES, budget=BUDGETS)
def test_trim_property_never_mutates(messages: list[Message], budget: int) -> None:
    """The caller's list and messages are unchanged, and the result is a new list."""
    before = copy.deepcopy(messages)
    out = trim_messages(messages, budget)
    assert messages == before
    assert out is not messages
    assert all(m in before for m in out[:-1])


# --- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        pytest.param(PNG, "image/png", id="png"),
        pytest.param(JPEG, "image/jpeg", id="jpeg"),
        pytest.param(GIF, "image/gif", id="gif"),
        pytest.param(WEBP, "image/webp", id="webp"),
        pytest.param(BMP, "image/bmp", id="bmp"),
    ],
)
def test_image_url_sniffs_allowed_files_and_bytes(tmp_path: Path, data: bytes, mime: str) -> None:
    """An allowed local file (str or Path) or raw bytes become a data URI whose mime comes from the magic bytes."""
    path = tmp_path / "image.txt"  # the extension says nothing: the content decides
    path.write_bytes(data)
    expected = data_uri(mime, data)
    assert image_url(str(path), tmp_path) == expected
    assert image_url(path, LocalImages.under(tmp_path)) == expected
    assert image_url("image.txt", tmp_path) == expected  # relative to the allowed folder
    assert image_url(data) == expected
    assert image_url(data_uri(mime, data)) == expected


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://example.com/cat.png", id="https"),
        pytest.param("http://example.com/cat.png", id="http"),
        pytest.param("HTTPS://example.com/cat.png", id="scheme-any-case"),
        pytest.param(data_uri("image/png", PNG), id="data-uri"),
    ],
)
def test_image_url_passes_urls_through(url: str) -> None:
    """URLs and image data URIs whose type is right are sent as they are."""
    assert image_url(url) == url


def test_image_url_data_uri_mime_comes_from_its_bytes() -> None:
    """A data URI declaring the wrong image type is sent with the type its bytes show."""
    assert image_url(data_uri("image/jpeg", PNG)) == data_uri("image/png", PNG)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        pytest.param(b"plain text", "images[0] is not an image", id="bytes-not-an-image"),
        pytest.param((b"plain text", "photo.png"), "images[0] 'photo.png' is not an image", id="name-does-not-help"),
        pytest.param(data_uri("text/plain", b"hello"), "not data:image/...;base64", id="data-uri-not-image-type"),
        pytest.param("data:image/png,rawbytes", "not data:image/...;base64", id="data-uri-not-base64"),
        pytest.param("data:image/png;base64,@@@@", "base64 does not decode", id="data-uri-bad-base64"),
        pytest.param(data_uri("image/png", b"root:x:0:0"), "is not an image", id="data-uri-not-image-bytes"),
        pytest.param("file:///etc/passwd", "is a file: URL", id="file-url"),
        pytest.param("ftp://example.com/a.png", "is a ftp: URL", id="ftp-url"),
        pytest.param("", "is empty", id="empty"),
        pytest.param("cat.png", "is a local path; local images are off: pass --allow-local-images DIR", id="path-off"),
        pytest.param(Path("cat.png"), "local images are off", id="path-object-off"),
    ],
)
def test_image_url_refuses_with_the_entry_and_the_fix(item: MediaItem, reason: str) -> None:
    """Anything that is not an image, or a local path with local images off, is an InputError saying why."""
    with pytest.raises(InputError) as raised:
        image_url(item)
    assert reason in str(raised.value)


def test_image_url_reason_names_the_entry_and_its_index() -> None:
    """The reason names the entry by its index and value, and the fix."""
    with pytest.raises(InputError) as raised:
        image_url("x.png", index=3)
    assert str(raised.value).startswith("images[3] 'x.png' is a local path; local images are off: pass ")


def test_image_url_missing_file_names_it(tmp_path: Path) -> None:
    """A missing file under the allowed folder raises InputError naming the path."""
    with pytest.raises(InputError, match=r"nope\.png.*cannot be read"):
        image_url("nope.png", tmp_path)


def test_named_files_allow_only_themselves(tmp_path: Path) -> None:
    """LocalImages.named allows the files given and no other file beside them."""
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.png").write_bytes(PNG)
    local = LocalImages.named([str(tmp_path / "a.png"), "https://example.com/c.png"])
    assert image_url(str(tmp_path / "a.png"), local) == data_uri("image/png", PNG)
    with pytest.raises(InputError, match="outside the files allowed"):
        image_url(str(tmp_path / "b.png"), local)


def test_allowed_folder_that_is_not_one_is_a_clear_reason(tmp_path: Path) -> None:
    """A missing or non-folder allow_local_images is named in the reason."""
    (tmp_path / "file").write_text("x")
    for folder in (tmp_path / "missing", tmp_path / "file"):
        with pytest.raises(InputError, match="allow_local_images"):
            image_url("a.png", folder)


async def test_image_urls_keeps_order_and_names_the_bad_index(tmp_path: Path) -> None:
    """image_urls turns every item in order, and a refusal names the index of the bad one."""
    (tmp_path / "a.gif").write_bytes(GIF)
    urls = await image_urls(["https://example.com/1.png", "a.gif", PNG], tmp_path)
    assert urls == ["https://example.com/1.png", data_uri("image/gif", GIF), data_uri("image/png", PNG)]
    with pytest.raises(InputError, match=r"^images\[1\] 'b\.gif'"):
        await image_urls(["a.gif", "b.gif"], tmp_path)


def test_attach_images_builds_image_parts_before_text() -> None:
    """Images go on the last message as image_url parts, then its text; the caller's list is untouched."""
    messages = [msg("system", "Be terse."), msg("user", "What is it?")]
    before = copy.deepcopy(messages)
    out = attach_images(messages, [data_uri("image/png", PNG), "https://example.com/dog.jpg"])
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


def test_attach_images_keeps_existing_parts() -> None:
    """A last message that already has parts keeps them, after the new images, unmutated."""
    parts = [{"type": "text", "text": "describe"}]
    messages = [msg("user", parts)]
    before = copy.deepcopy(messages)
    out = attach_images(messages, ["https://example.com/a.jpg"])
    assert messages == before
    assert out[-1]["content"] == [{"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}, *parts]


@pytest.mark.parametrize(
    ("messages", "urls"),
    [
        pytest.param([], ["https://example.com/a.png"], id="no-messages"),
        pytest.param([msg("user", "x")], [], id="no-images"),
    ],
)
def test_attach_images_nothing_to_do(messages: list[Message], urls: list[str]) -> None:
    """With no messages or no images, a copy of the messages comes back."""
    out = attach_images(messages, urls)
    assert out == messages and out is not messages


def test_attach_images_empty_content_gets_no_text_part() -> None:
    """An empty last message carries only the images."""
    out = attach_images([msg("user", "")], ["https://example.com/a.png"])
    assert out[-1]["content"] == [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]


async def test_prepare_messages_trims_then_attaches_and_refuses_before_sending(tmp_path: Path) -> None:
    """prepare_messages cuts the text to the budget, adds the images, and raises for a refused one."""
    (tmp_path / "cat.png").write_bytes(PNG)
    api = HuggingFaceAPI("hf_unused")
    messages = [msg("user", "x" * 100)]
    out = await api.prepare_messages(messages, max_input_length=OVERHEAD + 5, media=["cat.png"], local_images=tmp_path)
    assert out == [
        msg(
            "user",
            [
                {"type": "image_url", "image_url": {"url": data_uri("image/png", PNG)}},
                {"type": "text", "text": "xxxxx"},
            ],
        )
    ]
    with pytest.raises(InputError, match="local images are off"):
        await api.prepare_messages(messages, media=["cat.png"])
