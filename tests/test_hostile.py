"""Hostile datasets, hostile servers and path mistakes: nothing lost, nothing leaked.

Each test names the promise it keeps; the servers here misbehave on purpose (echoing the
Authorization header at the worst place, answering for the wrong host).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from hfbatch.cli import cli
from hfbatch.client import HuggingFaceAPI
from hfbatch.credentials import resolve_token, token_for
from hfbatch.errors import APIError, JobSpecError
from hfbatch.http_errors import MAX_MESSAGE, error_for_status, map_transport_errors
from hfbatch.jobspec import build_spec, load_job_file
from tests.helpers import app_in_thread

TOKEN = "hf_HostileTestToken0123456789abcdefXYZ"
SEEN = web.AppKey("seen", list[str])


def pieces(secret: str, size: int = 6) -> set[str]:
    """Every substring of `secret` `size` long: none may show in any text hfbatch writes."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def assert_no_piece(text: str, secret: str = TOKEN) -> None:
    """No 6-character piece of `secret` appears in `text` (its hf_ prefix aside)."""
    found = [p for p in pieces(secret[3:]) if p in text]
    assert not found, f"token pieces leaked: {found[:3]}"


# --------------------------------------------------------------------------- 2: token fragments


@pytest.mark.parametrize("offset", [250, 280, 290, 295, 297, 299, 300, 310])
def test_a_token_straddling_the_cut_is_scrubbed_before_cutting(offset: int) -> None:
    """A server echoing the token near the 300-character cut leaks no piece of it."""
    body = json.dumps({"error": {"message": "x" * offset + f" Authorization: Bearer {TOKEN} " + "y" * 50}})
    err = error_for_status(500, body, provider="p", secrets=(TOKEN,))
    assert len(err.message) <= MAX_MESSAGE
    for text in (err.message, err.body or "", str(err)):
        assert_no_piece(text)


@pytest.mark.parametrize("offset", [0, 60, 75, 78, 79, 80, 100, 290, 299])
def test_a_malformed_reply_quoting_the_token_leaks_no_piece(offset: int) -> None:
    """A 200 that is not JSON and quotes the token at any place is scrubbed, then cut."""
    raw = ("<" + "z" * offset + f" Bearer {TOKEN} tail").encode()
    with pytest.raises(APIError) as raised, map_transport_errors("p", (TOKEN,)):
        from hfbatch.wire import parse_completion

        parse_completion(raw, "p", "m")
    assert_no_piece(str(raised.value))


def test_text_shaped_like_any_hf_token_is_masked() -> None:
    """A token that is not ours (another user's, quoted by a proxy) is masked too."""
    err = error_for_status(500, "upstream said: hf_SomebodyElse1234567 is invalid", provider="p")
    assert "hf_SomebodyElse1234567" not in err.message and "hf_***" in err.message


async def _echo_headers(request: web.Request) -> web.StreamResponse:
    """A 500 quoting the Authorization header so that the token straddles character 300."""
    auth = request.headers.get("Authorization", "")
    request.app[SEEN].append(auth)
    return web.json_response({"error": "p" * 285 + f" (got {auth})"}, status=500)


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[str]]]:
    """An OpenAI-compatible server on loopback that records the Authorization header of each request."""
    app = web.Application()
    seen: list[str] = []
    app[SEEN] = seen
    app.router.add_post("/v1/chat/completions", _echo_headers)
    with app_in_thread(app) as url:
        yield url + "/v1", seen


async def test_client_errors_from_an_echoing_server_hold_no_token_piece(
    recorder: tuple[str, list[str]], fast_policy: Any
) -> None:
    """Through the client, the error raised from an echoing server carries no piece of the token."""
    base, seen = recorder
    async with HuggingFaceAPI(TOKEN, api_base=base, retry=fast_policy) as api:
        with pytest.raises(APIError) as raised:
            await api.chat("m", [{"role": "user", "content": "hi"}])
    assert seen and seen[0] == f"Bearer {TOKEN}"
    assert_no_piece(str(raised.value))


# --------------------------------------------------------------------------- 3: the token's destination


def test_a_named_variable_that_is_unset_gives_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """--api-key-env OTHER with OTHER unset reads nothing else: not HF_TOKEN, not the token file."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert resolve_token("OTHER_KEY") is None
    assert token_for("https://router.huggingface.co/v1", None, "OTHER_KEY") is None
    monkeypatch.setenv("OTHER_KEY", "sk-other")
    assert token_for("http://10.0.0.5:8000/v1", None, "OTHER_KEY") == "sk-other"


@pytest.mark.parametrize(
    ("api_base", "hub_url", "sent"),
    [
        pytest.param("https://router.huggingface.co/v1", None, True, id="hf-router"),
        pytest.param("https://api-inference.huggingface.co/v1", None, True, id="hf-subdomain"),
        pytest.param("http://127.0.0.1:9/v1", "http://127.0.0.1:9", True, id="foreign-with-hub-url"),
        pytest.param("http://10.0.0.5:8000/v1", None, False, id="foreign-vllm"),
        pytest.param("https://huggingface.co.evil.example/v1", None, False, id="lookalike-host"),
    ],
)
def test_the_hf_token_goes_only_to_hf_hosts_or_where_asked(
    monkeypatch: pytest.MonkeyPatch, api_base: str, hub_url: str | None, sent: bool
) -> None:
    """Without --api-key-env, the HF token is sent to Hugging Face, or to a server given a Hub URL."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert (token_for(api_base, hub_url, None) == TOKEN) is sent


def test_run_against_a_foreign_server_does_not_send_the_hf_token(
    recorder: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`hfbatch run --api-base http://other/v1` with HF_TOKEN set sends no Authorization header."""
    base, seen = recorder
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HFBATCH_TIME_SCALE", "0.001")
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "prompt": "hi"}\n')
    args = ["run", "--input", str(inp), "--output", str(tmp_path / "out.jsonl"), "--model", "m"]
    result = CliRunner().invoke(cli, [*args, "--api-base", base, "--max-retries", "0"])
    assert seen and all(h == "" for h in seen)
    assert TOKEN not in result.output


# --------------------------------------------------------------------------- 4: credentials in URLs


@pytest.mark.parametrize("key", ["api_base", "hub_url"])
def test_credentials_in_a_url_are_refused_without_echoing_them(key: str) -> None:
    """http://user:pass@host/v1 is a usage error that shows neither the user nor the password."""
    url = "http://alice:s3cr3t-pa55@10.0.0.5:8000/v1"
    with pytest.raises(JobSpecError) as raised:
        build_spec({}, {"input": "in.jsonl", "output": "out.jsonl", "model": "m", key: url})
    text = str(raised.value)
    assert "s3cr3t-pa55" not in text and "alice" not in text and key in text


def test_credentials_in_a_url_give_one_line_and_exit_2_from_every_command(tmp_path: Path) -> None:
    """`hfbatch chat` and `hfbatch run` with userinfo in --api-base: exit 2, one line, nothing echoed."""
    url = "http://alice:s3cr3t-pa55@127.0.0.1:9/v1"
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "prompt": "hi"}\n')
    runs = [
        ["chat", "m", "hi", "--api-base", url],
        ["run", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--model", "m", "--api-base", url],
    ]
    for args in runs:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "s3cr3t-pa55" not in result.output and "alice" not in result.output
        assert result.output.strip().count("\n") == 0 and "Traceback" not in result.output
    assert not (tmp_path / "o.jsonl").exists()


# --------------------------------------------------------------------------- 5: token-shaped job-file values


@pytest.mark.parametrize(
    "line",
    [
        f'model = "{TOKEN}"',
        f'api_key_env = "{TOKEN}"',
        f'providers = ["a", "{TOKEN}"]',
        f'system = "use {TOKEN} for auth"',
    ],
)
def test_a_token_in_any_job_file_key_is_refused_and_not_echoed(tmp_path: Path, line: str) -> None:
    """A value shaped like a token is refused, and the message does not repeat it."""
    job = tmp_path / "job.toml"
    job.write_text(f'input = "in.jsonl"\noutput = "out.jsonl"\n{line}\n')
    with pytest.raises(JobSpecError) as raised:
        load_job_file(job)
    assert_no_piece(str(raised.value))
    assert "token" in str(raised.value)
