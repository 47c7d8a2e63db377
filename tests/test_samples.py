"""n samples per row and structured output, end to end against the simulator."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hfbatch.errors import ExitCode
from hfbatch.jobspec import JobSpec
from hfbatch.runner import run_job
from hfbatch.schema import schema_errors
from hfbatch.sim import Fault, SimProvider, SimServer, reply_for
from tests.helpers import MODEL, one_model

pytestmark = pytest.mark.usefixtures("fast_time")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "kind": {"enum": ["cat", "dog", "fish"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "owner": {
            "type": "object",
            "properties": {"age": {"type": "integer", "minimum": 0}},
            "required": ["age"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "kind", "tags", "owner"],
    "additionalProperties": False,
}


def write_rows(path: Path, n: int) -> Path:
    """N plain prompt rows."""
    path.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"question number {i}"}) + "\n" for i in range(n)))
    return path


def spec_for(sim: SimServer, tmp_path: Path, rows: int = 40, **kw: Any) -> JobSpec:
    """A job on the simulator over `rows` plain prompts."""
    kw.setdefault("concurrency", 8)
    kw.setdefault("max_tokens", 64)
    return JobSpec(
        input=write_rows(tmp_path / "in.jsonl", rows),
        output=tmp_path / kw.pop("out", "out.jsonl"),
        model=MODEL,
        api_base=sim.api_base,
        hub_url=sim.hub_url,
        **kw,
    )


def records(path: Path) -> list[dict[str, Any]]:
    """Every JSONL record (each line must parse)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def user(i: int) -> list[dict[str, Any]]:
    """The messages row i sends."""
    return [{"role": "user", "content": f"question number {i}"}]


# --------------------------------------------------------------------------- n samples


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_n_is_asked_for_natively_and_every_sample_kept(sim: SimServer, tmp_path: Path, stream: bool) -> None:
    """A provider that serves n: one request per row, the N choices in `outputs`, their finish reasons beside."""
    spec = spec_for(sim, tmp_path, n=3, stream=stream)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    out = records(spec.output)
    assert len(out) == 40
    for rec in out:
        i = int(rec["id"][1:])
        assert rec["outputs"] == [reply_for(user(i), 64, sample=s).text for s in range(3)]
        assert rec["finish_reasons"] == ["stop"] * 3 and "output" not in rec
        assert rec["completion_tokens"] == sum(len(t.split()) for t in rec["outputs"])
    assert sim.counts()["p1"]["requests"] == 40


@pytest.mark.parametrize(
    "sim_config", [one_model(SimProvider("p1", reject_n=True, latency=0.01), SimProvider("p2"))], indirect=True
)
async def test_a_provider_refusing_n_is_learned_once_and_served_one_sample_at_a_time(
    sim: SimServer, tmp_path: Path
) -> None:
    """n=3 on a provider that answers 400 to n > 1: 3 answers per row, at most one refused request per worker."""
    spec = spec_for(sim, tmp_path, rows=60, n=3, seed=7)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    out = records(spec.output)
    assert len(out) == 60 and all(len(r["outputs"]) == 3 for r in out)
    assert {r["provider"] for r in out} == {"p1"}  # refused n, not the provider: no fail-over
    refused = sim.counts()["p1"]["by_outcome"].get("400", 0)
    assert 1 <= refused <= spec.concurrency
    assert sim.counts()["p1"]["requests"] == 60 * 3 + refused and sim.counts()["p2"]["requests"] == 0
    # Each single request carried seed + i, so no sample was paid for twice.
    assert sim.paid_twice() == 0
    stats = json.loads(spec.stats_path.read_text())
    assert stats["providers"]["p1"]["failures"]["4xx"] == refused
    assert stats["providers"]["p1"]["requests"] == sim.counts()["p1"]["requests"]
    assert stats["models"][MODEL]["rows_done"] == 60


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1", max_n=2))], indirect=True)
async def test_a_provider_sending_fewer_choices_keeps_them_and_the_rest_come_singly(
    sim: SimServer, tmp_path: Path
) -> None:
    """A provider that silently caps n at 2: the 2 choices are kept, the third is asked for alone."""
    spec = spec_for(sim, tmp_path, rows=10, n=3, concurrency=1)
    assert (await run_job(spec)).exit_code is ExitCode.OK
    out = records(spec.output)
    assert all(len(r["outputs"]) == 3 for r in out)
    first = out[0]
    assert first["outputs"][:2] == [reply_for(user(0), 64, sample=s).text for s in range(2)]
    # Learned on the first row: every later row is three single requests.
    assert sim.counts()["p1"]["requests"] == 2 + 9 * 3


# --------------------------------------------------------------------------- structured output


@pytest.fixture(params=["jsonschema", "builtin"])
def validator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run with the jsonschema package when installed, and with hfbatch's own checker."""
    if request.param == "builtin":
        monkeypatch.setitem(sys.modules, "jsonschema", None)  # the import then fails
    else:
        pytest.importorskip("jsonschema")
    return str(request.param)


@pytest.mark.parametrize(
    "sim_config", [one_model(SimProvider("p1", faults=(Fault("invalid_json", rate=0.3),)))], indirect=True
)
async def test_invalid_json_replies_are_retried_until_every_output_is_valid(
    sim: SimServer, tmp_path: Path, validator: str
) -> None:
    """30% of replies not JSON or breaking the schema: each is retried, counted, and never written."""
    schema = tmp_path / "pet.schema.json"
    schema.write_text(json.dumps(SCHEMA))
    spec = spec_for(sim, tmp_path, rows=60, response_format=str(schema), max_retries=8)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.OK
    out = records(spec.output)
    assert len(out) == 60
    for rec in out:
        assert schema_errors(json.loads(rec["output"]), SCHEMA) == []
    stats = json.loads(spec.stats_path.read_text())
    invalid = stats["providers"]["p1"]["failures"]["invalid_output"]
    assert invalid > 0 and stats["providers"]["p1"]["retries"] >= invalid
    # Every reply was whole and billed; the invalid ones are the difference.
    assert sim.billing()["total"]["replies"] == 60 + invalid
    sent = sim.requests[0][1]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "pet_schema", "schema": SCHEMA, "strict": True}}


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1", faults=(Fault("invalid_json"),)))], indirect=True)
async def test_a_row_whose_replies_are_all_invalid_fails_as_invalid_output(sim: SimServer, tmp_path: Path) -> None:
    """When the budget is spent the row fails with the class invalid_output; no invalid text is written."""
    spec = spec_for(sim, tmp_path, rows=3, response_format="json", max_retries=1, max_attempts=2)
    report = await run_job(spec)
    assert report.exit_code is ExitCode.FAILED_ROWS
    assert not spec.output.exists() or spec.output.read_text() == ""
    errors = records(spec.errors_path)
    assert [e["kind"] for e in errors] == ["invalid_output"] * 3
    assert all(e["error"] == "InvalidOutputError" and e["attempts"] == 2 for e in errors)


async def test_json_mode_takes_any_json_object(sim: SimServer, tmp_path: Path) -> None:
    """--response-format json sends json_object, and every output is a JSON object."""
    spec = spec_for(sim, tmp_path, rows=10, response_format="json")
    assert (await run_job(spec)).exit_code is ExitCode.OK
    assert all(isinstance(json.loads(r["output"]), dict) for r in records(spec.output))
    assert sim.requests[0][1]["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    "sim_config",
    [one_model(SimProvider("plain", supports_structured_output=False), SimProvider("structured"))],
    indirect=True,
)
async def test_providers_without_structured_output_are_skipped(sim: SimServer, tmp_path: Path) -> None:
    """A provider the router marks supports_structured_output: false gets no request of a structured run."""
    spec = spec_for(sim, tmp_path, rows=20, response_format="json")
    assert (await run_job(spec)).exit_code is ExitCode.OK
    assert {r["provider"] for r in records(spec.output)} == {"structured"}
    assert sim.counts()["plain"]["requests"] == 0


@pytest.mark.parametrize(
    "sim_config", [one_model(SimProvider("plain", supports_structured_output=False))], indirect=True
)
async def test_no_provider_with_structured_output_is_a_usage_error(sim: SimServer, tmp_path: Path) -> None:
    """No provider can honour the response_format: exit 2 before any request."""
    from hfbatch.errors import UsageError

    with pytest.raises(UsageError, match="structured output"):
        await run_job(spec_for(sim, tmp_path, rows=5, response_format="json"))
    assert sim.counts()["plain"]["requests"] == 0


@pytest.mark.parametrize(
    "sim_config",
    [one_model(SimProvider("p1", reject_n=True, faults=(Fault("invalid_json", rate=0.3),)))],
    indirect=True,
)
async def test_n_samples_with_a_schema_keep_the_valid_ones_across_attempts(sim: SimServer, tmp_path: Path) -> None:
    """n=3 with a schema on a provider refusing n and sending bad JSON: 3 valid outputs per row."""
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps(SCHEMA))
    spec = spec_for(sim, tmp_path, rows=20, n=3, seed=1, response_format=str(schema), max_retries=8)
    assert (await run_job(spec)).exit_code is ExitCode.OK
    for rec in records(spec.output):
        assert len(rec["outputs"]) == 3
        assert all(schema_errors(json.loads(o), SCHEMA) == [] for o in rec["outputs"])


@pytest.mark.parametrize("sim_config", [one_model(SimProvider("p1", reject_n=True))], indirect=True)
async def test_samples_from_several_requests_make_one_response_body(sim: SimServer, tmp_path: Path) -> None:
    """With --keep-response, n samples taken one per request are one chat.completion: n choices, usage summed."""
    spec = spec_for(sim, tmp_path, rows=4, n=3, seed=3, keep_response=True)
    assert (await run_job(spec)).exit_code is ExitCode.OK
    for rec in records(spec.output):
        body = rec["response"]
        assert [c["index"] for c in body["choices"]] == [0, 1, 2]
        assert [c["message"]["content"] for c in body["choices"]] == rec["outputs"]
        assert body["usage"]["completion_tokens"] == rec["completion_tokens"]
        assert body["usage"]["prompt_tokens"] == rec["prompt_tokens"]
