"""What a result carries: reasoning, the prompt, the whole reply; OpenAI batch output; models named by rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hfbatch.cli import cli
from hfbatch.errors import ExitCode
from hfbatch.jobspec import JobSpec
from hfbatch.runner import run_job
from hfbatch.sim import Fault, SimConfig, SimModel, SimProvider, SimServer, reasoning_for, reply_for
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as JSON lines."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def prompts(n: int) -> list[dict[str, Any]]:
    """N plain prompt rows."""
    return [{"id": f"r{i}", "prompt": f"tell me about item {i}"} for i in range(n)]


def spec_for(sim: SimServer, inp: Path, out: Path, **kw: Any) -> JobSpec:
    """A job on the simulator."""
    kw.setdefault("concurrency", 8)
    kw.setdefault("max_tokens", 64)
    kw.setdefault("model", MODEL)
    return JobSpec(input=inp, output=out, api_base=sim.api_base, hub_url=sim.hub_url, **kw)


def records(path: Path) -> list[dict[str, Any]]:
    """Every JSONL record (each line must parse)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- reasoning


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1", reasoning=True))], indirect=True)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_reasoning_is_its_own_column_streamed_or_not(sim: SimServer, tmp_path: Path, stream: bool) -> None:
    """A reasoning model's reasoning_content goes to `reasoning`, the answer to `output`."""
    rows = prompts(20)
    spec = spec_for(sim, write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", stream=stream)
    assert (await run_job(spec)).exit_code is ExitCode.OK
    by_id = {r["id"]: [{"role": "user", "content": r["prompt"]}] for r in rows}
    for rec in records(spec.output):
        messages = by_id[rec["id"]]
        thought = reasoning_for(messages)
        assert rec["reasoning"] == thought
        assert rec["output"] == reply_for(messages, 64 - len(thought.split(" "))).text


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1", reasoning_only=True))], indirect=True)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_reply_all_in_reasoning_is_a_result_not_an_empty_one(
    sim: SimServer, tmp_path: Path, stream: bool
) -> None:
    """Content null with everything in reasoning: the row is done (no 'empty' retries), its reasoning kept."""
    spec = spec_for(sim, write_jsonl(tmp_path / "in.jsonl", prompts(10)), tmp_path / "out.jsonl", stream=stream)
    assert (await run_job(spec)).exit_code is ExitCode.OK
    out = records(spec.output)
    assert len(out) == 10 and all(r["output"] == "" and r["reasoning"].startswith("think-") for r in out)
    assert json.loads(spec.stats_path.read_text())["overall"]["failures"]["empty"] == 0


# --------------------------------------------------------------------------- the prompt and the whole reply


async def test_keep_prompt_stores_the_rendered_prompt_or_the_messages(sim: SimServer, tmp_path: Path) -> None:
    """One user message is stored as its text (`prompt`); a conversation as `messages`."""
    rows: list[dict[str, Any]] = [
        {"id": "a", "topic": "owls", "tags": ["night", "birds"]},
        {"id": "b", "topic": "cats", "system": "Be brief."},
    ]
    inp = write_jsonl(tmp_path / "in.jsonl", rows)
    spec = spec_for(
        sim, inp, tmp_path / "out.jsonl", template="About {topic} ({tags|no tags}):\n{tags|}", keep_prompt=True
    )
    assert (await run_job(spec)).exit_code is ExitCode.OK
    out = {r["id"]: r for r in records(spec.output)}
    assert out["a"]["prompt"] == "About owls (night\nbirds):\nnight\nbirds" and "messages" not in out["a"]
    assert out["b"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "About cats (no tags):\n"},
    ]
    assert out["a"]["output"] == reply_for([{"role": "user", "content": out["a"]["prompt"]}], 64).text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_keep_response_stores_the_whole_chat_completion(sim: SimServer, tmp_path: Path, stream: bool) -> None:
    """--keep-response keeps the reply's body (usage, choices, logprobs) and its request id."""
    spec = spec_for(
        sim, write_jsonl(tmp_path / "in.jsonl", prompts(5)), tmp_path / "out.jsonl", keep_response=True, stream=stream
    )
    assert (await run_job(spec)).exit_code is ExitCode.OK
    for rec in records(spec.output):
        body = rec["response"]
        assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
        assert body["choices"][0]["message"]["content"] == rec["output"]
        assert body["choices"][0]["finish_reason"] == rec["finish_reason"]
        assert body["usage"]["completion_tokens"] == rec["completion_tokens"]
        assert rec["request_id"].startswith("Root=")


# --------------------------------------------------------------------------- OpenAI batch output


def check_batch_line(line: dict[str, Any]) -> None:
    """A strict reading of one line of OpenAI batch output, as the Batch API documents it."""
    assert list(line) == ["id", "custom_id", "response", "error"]
    assert isinstance(line["id"], str) and line["id"].startswith("batch_req_")
    assert isinstance(line["custom_id"], str | int)
    if line["error"] is not None:
        assert line["response"] is None
        assert set(line["error"]) == {"code", "message"}
        assert all(isinstance(v, str) for v in line["error"].values())
        return
    response = line["response"]
    assert set(response) == {"status_code", "request_id", "body"}
    assert response["status_code"] == 200 and isinstance(response["request_id"], str)
    body = response["body"]
    assert body["object"] == "chat.completion" and isinstance(body["id"], str) and isinstance(body["created"], int)
    assert isinstance(body["model"], str) and body["choices"]
    for i, choice in enumerate(body["choices"]):
        assert choice["index"] == i and choice["finish_reason"] in ("stop", "length")
        assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    usage = body["usage"]
    assert all(isinstance(usage[k], int) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))


def batch_lines(path: Path) -> list[dict[str, Any]]:
    """The lines of an OpenAI batch output file, each checked."""
    lines = records(path)
    for line in lines:
        check_batch_line(line)
    return lines


@pytest.mark.parametrize(
    "sim_config", [one_model(SimProvider("p1", faults=(Fault("400", rate=0.2),)), seed=5)], indirect=True
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_openai_batch_output_reads_back_and_resumes(sim: SimServer, tmp_path: Path, stream: bool) -> None:
    """--output-format openai writes Batch API lines (errors too), and a rerun finds the done rows by custom_id."""
    rows: list[dict[str, Any]] = [
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"messages": [{"role": "user", "content": f"question {i}"}]},
        }
        for i in range(30)
    ]
    inp = write_jsonl(tmp_path / "batch.jsonl", rows)
    spec = spec_for(sim, inp, tmp_path / "out.jsonl", output_format="openai", stream=stream)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.FAILED_ROWS
    done = batch_lines(spec.output)
    failed = batch_lines(spec.errors_path)
    assert failed and all(f["error"]["code"] == "4xx" for f in failed)
    assert sorted(str(line["custom_id"]) for line in [*done, *failed]) == sorted(str(r["custom_id"]) for r in rows)
    for line in done:
        i = int(line["custom_id"].split("-")[1])
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        assert content == reply_for([{"role": "user", "content": f"question {i}"}], 64).text
    assert report.stats["rows"]["done"] == len(done)
    # A rerun sends only the failed rows, and appends them in the same shape.
    sent = sim.counts()["p1"]["requests"]
    again = await run_job(spec)
    assert sim.counts()["p1"]["requests"] - sent == again.stats["overall"]["requests"]
    assert again.stats["rows"]["skipped_already_done"] == len(done)
    ids = [line["custom_id"] for line in batch_lines(spec.output)]
    assert len(ids) == len(set(ids))


def test_openai_output_format_needs_a_jsonl_output(tmp_path: Path) -> None:
    """--output-format openai with a .parquet output is a usage error naming the format."""
    write_jsonl(tmp_path / "in.jsonl", prompts(1))
    args = ["run", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "o.parquet"), "--model", MODEL]
    result = CliRunner().invoke(cli, [*args, "--output-format", "openai"])
    assert result.exit_code == 2 and "openai format writes .jsonl" in result.output


# --------------------------------------------------------------------------- models named by the rows


TWO_MODELS = SimConfig(models=(SimModel("org/a", (SimProvider("pa"),)), SimModel("org/b", (SimProvider("pb"),))))


@pytest.mark.parametrize("sim_config", [TWO_MODELS], indirect=True)
async def test_batch_lines_name_their_model_when_the_job_does_not(sim: SimServer, tmp_path: Path) -> None:
    """With no --model, each OpenAI batch line's body.model is used; stats break the rows down per model."""
    rows = [
        {
            "custom_id": f"q{i}",
            "body": {"model": "org/a" if i % 3 else "org/b", "messages": [{"role": "user", "content": f"hi {i}"}]},
        }
        for i in range(30)
    ]
    spec = spec_for(sim, write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", model=None)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    for rec in records(spec.output):
        expected = "org/a" if int(rec["id"][1:]) % 3 else "org/b"
        assert rec["model"] == expected and rec["provider"] == ("pa" if expected == "org/a" else "pb")
    models = report.stats["models"]
    assert models["org/a"]["rows_done"] == 20 and models["org/b"]["rows_done"] == 10
    assert models["org/a"]["requests"] == sim.counts()["pa"]["requests"]


def test_no_model_anywhere_is_a_usage_error_before_any_request(sim: SimServer, tmp_path: Path) -> None:
    """Plain prompts and no --model: exit 2 naming the missing setting, nothing sent."""
    inp = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    args = ["run", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--api-base", sim.api_base]
    result = CliRunner().invoke(cli, [*args, "--hub-url", sim.hub_url])
    assert result.exit_code == 2 and "missing required setting 'model'" in result.output
    assert sum(c["requests"] for c in sim.counts().values()) == 0


# --------------------------------------------------------------------------- kept columns


def test_a_typo_in_keep_columns_is_refused_before_any_request(sim: SimServer, tmp_path: Path) -> None:
    """--keep-columns naming a column no row has: exit 2 naming it and the columns seen; nothing sent."""
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "p", "topic": "t"}])
    args = ["run", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--model", MODEL]
    result = CliRunner().invoke(
        cli, [*args, "--api-base", sim.api_base, "--hub-url", sim.hub_url, "--keep-columns", "topik"]
    )
    assert result.exit_code == 2
    assert "'topik'" in result.output and "did you mean 'topic'" in result.output
    assert sum(c["requests"] for c in sim.counts().values()) == 0
