"""Hostile datasets, hostile servers and path mistakes: nothing lost, nothing leaked.

Each test names the promise it keeps; the servers here misbehave on purpose (echoing the
Authorization header at the worst place, answering for the wrong host).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web
from click.testing import CliRunner, Result

from hfbatch import media
from hfbatch.cli import cli
from hfbatch.client import HuggingFaceAPI
from hfbatch.credentials import resolve_token, token_for
from hfbatch.errors import APIError, ExitCode, InputError, JobSpecError
from hfbatch.http_errors import MAX_MESSAGE, error_for_status, map_transport_errors
from hfbatch.jobfile import build_spec, load_job_file
from hfbatch.jobspec import JobSpec
from hfbatch.outputs.records import check_writable
from hfbatch.runner import run_job
from hfbatch.sim import Fault, SimProvider, SimServer
from tests.helpers import MODEL, app_in_thread, one_model

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


@pytest.mark.parametrize("secret", [TOKEN, "sk-ProviderKey0123456789abcdefXYZ"], ids=["hf-token", "other-key"])
@pytest.mark.parametrize("offset", [250, 262, 264, 267, 270, 273, 276, 280, 290, 299, 310])
def test_a_token_straddling_the_cut_is_scrubbed_before_cutting(offset: int, secret: str) -> None:
    """A server echoing the key near the 300-character cut leaks no piece of it, HF-shaped or not."""
    body = json.dumps({"error": {"message": "x" * offset + f" Authorization: Bearer {secret} " + "y" * 50}})
    err = error_for_status(500, body, provider="p", secrets=(secret,))
    assert len(err.message) <= MAX_MESSAGE
    for text in (err.message, err.body or "", str(err)):
        assert_no_piece(text, secret)


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


# --------------------------------------------------------------------------- 6, 7, 17: hostile values


def write_rows(path: Path, rows: list[str]) -> Path:
    """Write raw JSON lines (already encoded, so escapes stay as the test wrote them)."""
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def run_cli(sim: SimServer, inp: Path, out: Path, *extra: str) -> Result:
    """`hfbatch run` against the simulator, in-process."""
    args = ["run", "--input", str(inp), "--output", str(out), "--model", MODEL]
    return CliRunner().invoke(cli, [*args, "--api-base", sim.api_base, "--hub-url", sim.hub_url, *extra])


def sent(sim: SimServer) -> int:
    """Chat requests the simulator received."""
    return sum(c["requests"] for c in sim.counts().values())


def output_ids(out: Path) -> list[Any]:
    """The ids in a JSONL output, in order."""
    return [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.usefixtures("fast_time")
def test_lone_surrogates_in_ids_and_prompts_are_sent_written_and_resumed(sim: SimServer, tmp_path: Path) -> None:
    """Ids and prompts holding "\\udc80" go out as JSON escapes, come back in the output, and resume exactly."""
    rows = [json.dumps({"id": f"r{i}", "prompt": f"hello {i}"}) for i in range(10)]
    rows += ['{"id": "odd-\\udc80", "prompt": "a \\udc81 b"}', '{"id": 77, "prompt": "x\\ud800"}']
    inp, out = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    first = run_cli(sim, inp, out)
    assert first.exit_code == 0, first.output
    assert sorted(map(str, output_ids(out))) == sorted([f"r{i}" for i in range(10)] + ["odd-\udc80", "77"])
    asked = sent(sim)
    again = run_cli(sim, inp, out)
    assert again.exit_code == 0, again.output
    assert sent(sim) == asked and sim.paid_twice() == 0


@pytest.mark.parametrize(
    "sim_config", [one_model(SimProvider("p1", faults=(Fault("surrogate", rate=0.5),)))], indirect=True
)
@pytest.mark.usefixtures("fast_time")
def test_replies_holding_lone_surrogates_are_kept_and_never_paid_twice(sim: SimServer, tmp_path: Path) -> None:
    """A provider answering with lone surrogates: every row is written once, and a rerun pays for nothing."""
    rows = [json.dumps({"id": i, "prompt": f"question {i}"}) for i in range(40)]
    inp, out = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert run_cli(sim, inp, out).exit_code == 0
    outputs = [json.loads(line)["output"] for line in out.read_text().splitlines()]
    assert len(outputs) == 40 and any("\udc80" in o for o in outputs)
    assert run_cli(sim, inp, out).exit_code == 0
    assert sim.paid_twice() == 0 and sim.billing()["total"]["replies"] == 40


@pytest.mark.parametrize(
    "sim_config",
    [one_model(SimProvider("deep", faults=(Fault("deep"),)), SimProvider("ok"))],
    indirect=True,
)
@pytest.mark.usefixtures("fast_time")
def test_replies_nested_too_deeply_never_stop_the_run(sim: SimServer, tmp_path: Path) -> None:
    """A provider whose replies carry JSON nested ~980 levels: every row is still done, through another provider."""
    rows = [json.dumps({"id": i, "prompt": f"q {i}"}) for i in range(30)]
    inp, out = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    result = run_cli(sim, inp, out)
    assert result.exit_code == 0, result.output
    assert sorted(output_ids(out)) == list(range(30))


@pytest.mark.usefixtures("fast_time")
def test_a_row_too_deep_to_send_is_a_bad_row_and_the_others_go_on(sim: SimServer, tmp_path: Path) -> None:
    """A kept column or message nested past what can be encoded is a bad row with a reason, never a crash."""
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]
    rows = [json.dumps({"id": i, "prompt": f"q {i}"}) for i in range(5)]
    inp = write_rows(tmp_path / "in.jsonl", rows)
    from hfbatch.wire import encode_body

    with pytest.raises(InputError, match="nested too deeply"):
        encode_body({"messages": deep})
    with pytest.raises(RecursionError):
        check_writable({"meta": deep})
    result = run_cli(sim, inp, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "sim_config", [one_model(SimProvider("p1", faults=(Fault("empty", rate=0.3),)))], indirect=True
)
@pytest.mark.usefixtures("fast_time")
def test_empty_replies_are_retried_and_counted_unless_allowed(sim: SimServer, tmp_path: Path) -> None:
    """A reply with no text is an 'empty' failure, retried until a real one comes; --allow-empty keeps it."""
    rows = [json.dumps({"id": i, "prompt": f"q {i}"}) for i in range(40)]
    inp, out = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert run_cli(sim, inp, out).exit_code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 40 and all(r["output"] for r in records)
    stats = json.loads((tmp_path / "out.jsonl.stats.json").read_text())
    assert stats["providers"]["p1"]["failures"]["empty"] > 0
    allowed = tmp_path / "allowed.jsonl"
    assert run_cli(sim, inp, allowed, "--allow-empty").exit_code == 0
    assert any(json.loads(line)["output"] == "" for line in allowed.read_text().splitlines())


# --------------------------------------------------------------------------- 9: damaged output files


@pytest.mark.usefixtures("fast_time")
def test_a_blank_line_in_the_output_loses_nothing_on_resume(sim: SimServer, tmp_path: Path) -> None:
    """A blank line pasted mid-output is skipped on resume: no result after it is deleted or paid again."""
    rows = [json.dumps({"id": f"r{i}", "prompt": f"q {i}"}) for i in range(20)]
    inp, out = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert run_cli(sim, inp, out).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:7]) + "\n" + "".join(lines[7:]))
    asked = sent(sim)
    assert run_cli(sim, inp, out).exit_code == 0
    assert sent(sim) == asked and len(output_ids(out)) == 20


@pytest.mark.usefixtures("fast_time")
def test_a_garbage_line_in_the_output_stops_with_exit_2_naming_it(sim: SimServer, tmp_path: Path) -> None:
    """A line that is not a record, before the end, stops the run naming the line; the file is untouched."""
    rows = [json.dumps({"id": f"r{i}", "prompt": f"q {i}"}) for i in range(20)]
    inp, out = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert run_cli(sim, inp, out).exit_code == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]) + "oops, an edit\n" + "".join(lines[5:]))
    before, asked = out.read_bytes(), sent(sim)
    result = run_cli(sim, inp, out)
    assert result.exit_code == 2 and "line 6" in result.output
    assert out.read_bytes() == before and sent(sim) == asked


# --------------------------------------------------------------------------- 11: paths that coincide


def _paths_cases(tmp_path: Path) -> dict[str, tuple[list[str], Path]]:
    """Each way two paths can name one file: the extra flags and the file that must survive."""
    inp = tmp_path / "in.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(inp)
    hard = tmp_path / "hard.jsonl"
    os.link(inp, hard)
    return {
        "errors-is-input": (["--errors", str(inp)], inp),
        "stats-is-input": (["--stats", str(inp)], inp),
        "errors-is-output": (["--errors", str(tmp_path / "out.jsonl")], inp),
        "output-is-input-restart": (["--output", str(inp), "--restart"], inp),
        "output-is-a-symlink-to-input": (["--output", str(link)], inp),
        "stats-is-a-hard-link-to-input": (["--stats", str(hard)], inp),
    }


@pytest.mark.parametrize(
    "case",
    [
        "errors-is-input",
        "stats-is-input",
        "errors-is-output",
        "output-is-input-restart",
        "output-is-a-symlink-to-input",
        "stats-is-a-hard-link-to-input",
    ],
)
def test_two_paths_naming_one_file_are_refused_before_anything_is_written(
    sim: SimServer, tmp_path: Path, case: str
) -> None:
    """The input, output, errors and stats files must differ (symlinks and hard links seen through): exit 2."""
    rows = [json.dumps({"id": i, "prompt": f"q {i}"}) for i in range(5)]
    inp = write_rows(tmp_path / "in.jsonl", rows)
    before = inp.read_bytes()
    flags, keep = _paths_cases(tmp_path)[case]
    out = tmp_path / "out.jsonl"
    args = ["run", "--input", str(inp), "--output", str(out), "--model", MODEL, "--api-base", sim.api_base]
    result = CliRunner().invoke(cli, [*args, "--hub-url", sim.hub_url, *flags])
    assert result.exit_code == 2, result.output
    assert "same file" in result.output
    assert keep.read_bytes() == before and sent(sim) == 0


def test_an_output_inside_a_parquet_input_folder_is_refused(sim: SimServer, tmp_path: Path) -> None:
    """Writing the output among the input's part files would feed it back in next time: exit 2."""
    folder = tmp_path / "parts"
    folder.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "prompt": ["a", "b"]}), folder / "part-0.parquet")
    out = folder / "out.parquet"
    args = ["run", "--input", str(folder), "--output", str(out), "--model", MODEL, "--api-base", sim.api_base]
    result = CliRunner().invoke(cli, [*args, "--hub-url", sim.hub_url])
    assert result.exit_code == 2 and "inside the input folder" in result.output


@pytest.mark.usefixtures("fast_time")
def test_restart_keeps_the_paid_results_as_a_backup(sim: SimServer, tmp_path: Path) -> None:
    """--restart moves the earlier output to <output>.bak instead of deleting what was paid for."""
    rows = [json.dumps({"id": i, "prompt": f"q {i}"}) for i in range(8)]
    inp, out = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert run_cli(sim, inp, out).exit_code == 0
    first = out.read_bytes()
    assert run_cli(sim, inp, out, "--restart").exit_code == 0
    assert (tmp_path / "out.jsonl.bak").read_bytes() == first
    assert len(output_ids(out)) == 8


# --------------------------------------------------------------------------- 15: exit codes in every path


def test_a_hub_that_keeps_failing_exits_6_in_one_line_leaving_nothing_behind(
    sim_in_thread: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Hub 500s past every retry: exit 6 (not 1 or 2), one line, and no lock, tmp or errors file left."""
    server = sim_in_thread(one_model(SimProvider("p1"), hub_fail_first=1000))
    monkeypatch.setenv("HF_TOKEN", server.config.token)
    monkeypatch.setenv("HFBATCH_TIME_SCALE", "0.0001")
    inp = write_rows(tmp_path / "in.jsonl", [json.dumps({"id": 1, "prompt": "q"})])
    result = run_cli(server, inp, tmp_path / "out.jsonl")
    assert result.exit_code == 6, result.output
    assert result.output.strip().count("\n") == 0 and "Hub" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_model_no_provider_serves_exits_2(
    sim_in_thread: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An empty provider mapping means nothing can be sent: exit 2 with the reason."""
    server = sim_in_thread(one_model())
    monkeypatch.setenv("HF_TOKEN", server.config.token)
    inp = write_rows(tmp_path / "in.jsonl", [json.dumps({"id": 1, "prompt": "q"})])
    result = run_cli(server, inp, tmp_path / "out.jsonl")
    assert result.exit_code == 2, result.output
    assert "no live provider" in result.output


@pytest.mark.usefixtures("fast_time")
def test_a_full_disk_exits_6_in_one_line_and_keeps_the_results(sim: SimServer, tmp_path: Path) -> None:
    """Writes failing with ENOSPC (the errors file on /dev/full): exit 6, one line, results so far kept."""
    rows = [json.dumps({"id": i, "prompt": f"q {i}"}) for i in range(10)] + ['{"id": 99}']
    inp, out = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    errors = tmp_path / "errors.jsonl"
    errors.symlink_to("/dev/full")
    result = run_cli(sim, inp, out, "--errors", str(errors))
    assert result.exit_code == 6, result.output
    assert "No space left" in result.output and "Traceback" not in result.output
    assert all(json.loads(line) for line in out.read_text().splitlines())


def test_an_internal_error_exits_6_in_one_line(sim: SimServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A bug in hfbatch still ends in one line and a documented code, with the way to see more."""
    import hfbatch.runner

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(hfbatch.runner, "_report", broken)
    inp = write_rows(tmp_path / "in.jsonl", [json.dumps({"id": 1, "prompt": "q"})])
    result = run_cli(sim, inp, tmp_path / "out.jsonl")
    assert result.exit_code == 6 and "internal error" in result.output and "HFBATCH_DEBUG" in result.output


# --------------------------------------------------------------------------- 1: a dataset cannot upload local files

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.fixture
def allowed(tmp_path: Path) -> Path:
    """The folder local images are allowed from, holding cat.png; secret.png (a real PNG) sits outside it."""
    folder = tmp_path / "allowed"
    folder.mkdir()
    (folder / "cat.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG + b"SECRET")
    return folder


def _symlink_out(folder: Path) -> str:
    (folder / "link.png").symlink_to(folder.parent / "secret.png")
    return "link.png"


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "pipe.png")
    return "pipe.png"


def _huge(folder: Path) -> str:
    with (folder / "huge.png").open("wb") as f:
        f.write(PNG)
        f.truncate(30 * 2**20)  # sparse: 30 MiB on paper, no time to write
    return "huge.png"


def _text_as_png(folder: Path) -> str:
    (folder / "notes.png").write_text("root:x:0:0:root:/root:/bin/bash\n")
    return "notes.png"


def _release_fifos(folder: Path) -> None:
    """Open each FIFO for writing and close it, so a reader stuck on it (a regression) ends instead of hanging."""
    for path in folder.iterdir():
        if path.is_fifo():
            os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK))


HOSTILE = [
    pytest.param(lambda d: "/etc/passwd", "allowed", "resolves to /etc/passwd, outside", id="etc-passwd"),
    pytest.param(lambda d: "/etc/passwd", "/", "is not an image", id="etc-passwd-root-allowed"),
    pytest.param(lambda d: "/proc/self/environ", "allowed", "is under /proc", id="proc-environ"),
    pytest.param(lambda d: "/proc/self/environ", "/", "is under /proc", id="proc-environ-root-allowed"),
    pytest.param(lambda d: "/dev/zero", "allowed", "is under /dev", id="dev-zero"),
    pytest.param(lambda d: "/dev/zero", "/", "is under /dev", id="dev-zero-root-allowed"),
    pytest.param(_symlink_out, "allowed", "secret.png, outside", id="symlink-inside-pointing-out"),
    pytest.param(lambda d: "../secret.png", "allowed", "secret.png, outside", id="dotdot-escape"),
    pytest.param(_fifo, "allowed", "is a FIFO, not a regular file", id="fifo"),
    pytest.param(_huge, "allowed", "is 30.0 MiB, over the 20 MiB limit", id="30-mib"),
    pytest.param(_text_as_png, "allowed", "is not an image", id="text-renamed-png"),
    pytest.param(lambda d: "file:///etc/passwd", "allowed", "is a file: URL", id="file-url"),
    pytest.param(lambda d: "data:text/plain;base64,cm9vdDp4OjA6MA==", "allowed", "not data:image/", id="data-text"),
    pytest.param(lambda d: "data:image/png;base64,cm9vdDp4OjA6MA==", "allowed", "is not an image", id="data-not-png"),
    pytest.param(
        lambda d: "cat.png", None, "is a local path; local images are off: pass --allow-local-images DIR", id="off"
    ),
    pytest.param(lambda d: str(d / "cat.png"), None, "local images are off", id="off-absolute"),
]


@pytest.mark.usefixtures("fast_time")
@pytest.mark.parametrize(("entry", "folder", "reason"), HOSTILE)
async def test_a_row_cannot_upload_local_files(
    sim: SimServer, tmp_path: Path, allowed: Path, entry: Callable[[Path], str], folder: str | None, reason: str
) -> None:
    """A hostile `images` entry makes a bad row saying why; the server gets nothing of it, and the run goes on."""
    value = entry(allowed)
    rows = [
        {"id": "evil", "prompt": "look", "images": ["https://example.com/ok.png", value]},
        {"id": "fine", "prompt": "hi"},
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    local = {"allowed": allowed, "/": Path("/"), None: None}[folder]
    spec = JobSpec(
        input=inp,
        output=tmp_path / "out.jsonl",
        model=MODEL,
        api_base=sim.api_base,
        hub_url=sim.hub_url,
        allow_local_images=local,
    )
    try:
        report = await asyncio.wait_for(run_job(spec), timeout=10)
    finally:
        _release_fifos(allowed)
    assert report.exit_code is ExitCode.FAILED_ROWS
    (error,) = [json.loads(line) for line in spec.errors_path.read_text().splitlines()]
    assert error["id"] == "evil" and error["kind"] == "input"
    assert error["message"].startswith("images[1] '" + value[:20]) and reason in error["message"], error["message"]
    bodies = [body for _, body in sim.requests]
    assert [b["messages"][-1]["content"] for b in bodies] == ["hi"]  # only the good row was sent
    assert "SECRET" not in json.dumps(bodies) and "image_url" not in json.dumps(bodies)


@pytest.mark.usefixtures("fast_time")
async def test_an_image_under_the_allowed_folder_is_sent_as_a_png_data_uri(
    sim: SimServer, tmp_path: Path, allowed: Path
) -> None:
    """With --allow-local-images DIR, a PNG in DIR (relative, absolute, via a symlink in DIR) is sent as image/png."""
    (allowed / "sub").mkdir()
    (allowed / "sub" / "alias.jpg").symlink_to(allowed / "cat.png")  # the bytes, not the name, give the type
    rows = [
        {"id": "a", "prompt": "look", "images": "cat.png"},
        {"id": "b", "prompt": "look", "images": [str(allowed / "cat.png"), "sub/alias.jpg"]},
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = JobSpec(
        input=inp,
        output=tmp_path / "out.jsonl",
        model=MODEL,
        api_base=sim.api_base,
        hub_url=sim.hub_url,
        allow_local_images=allowed,
    )
    report = await asyncio.wait_for(run_job(spec), timeout=10)
    assert report.exit_code is ExitCode.OK
    sent = sorted((b["messages"][-1]["content"] for _, b in sim.requests), key=len)
    image = {"type": "image_url", "image_url": {"url": PNG_URI}}
    assert sent == [[image, {"type": "text", "text": "look"}], [image, image, {"type": "text", "text": "look"}]]


def test_allow_local_images_is_off_by_default_and_a_path_from_the_job_file(tmp_path: Path) -> None:
    """Local images are off unless allowed; the job-file key is a folder relative to the job file."""
    job = tmp_path / "job.toml"
    job.write_text('input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "m"\nallow_local_images = "images"\n')
    assert build_spec(load_job_file(job), {}).allow_local_images == tmp_path / "images"
    assert build_spec({}, {"input": "in.jsonl", "output": "out.jsonl", "model": "m"}).allow_local_images is None


def test_chat_image_reads_the_file_the_user_named_and_no_other(sim: SimServer, tmp_path: Path) -> None:
    """`hfbatch chat --image PATH` sends the typed file as a data URI; a typed file that is not an image is refused."""
    image = tmp_path / "cat.png"
    image.write_bytes(PNG)
    where = ["--api-base", sim.api_base, "--hub-url", sim.hub_url]
    result = CliRunner().invoke(cli, ["chat", MODEL, "what is it", "--image", str(image), *where])
    assert result.exit_code == 0, result.output
    assert "[images:1]" in result.output
    assert sim.requests[-1][1]["messages"][-1]["content"][0] == {"type": "image_url", "image_url": {"url": PNG_URI}}
    sent = len(sim.requests)
    result = CliRunner().invoke(cli, ["chat", MODEL, "what is it", "--image", "/etc/passwd", *where])
    assert result.exit_code == 2 and "'/etc/passwd' is not an image" in result.output
    assert len(sim.requests) == sent


def test_a_symlink_swapped_in_after_the_check_is_not_followed(
    tmp_path: Path, allowed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symlink that slips past the folder check (swapped in before the open) fails the open, not leaks."""
    (allowed / "sub").symlink_to(tmp_path)  # a folder link inside DIR, leading out to secret.png
    # As if the link appeared between resolving the path and opening it: resolution sees no symlink.
    monkeypatch.setattr(os.path, "realpath", lambda p, strict=False: os.path.abspath(p))
    with pytest.raises(InputError, match=r"'sub/secret\.png' cannot be read"):
        media.image_url("sub/secret.png", allowed)
