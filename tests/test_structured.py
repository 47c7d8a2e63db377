"""Pure pieces of dataset-ready results: the schema checker, response formats, n refusals, templates, replies."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from hfbatch.errors import BadRequestError, JobSpecError
from hfbatch.http_errors import error_for_status
from hfbatch.jobfile import build_spec, load_job_file
from hfbatch.samples import rejects_n
from hfbatch.schema import schema_errors
from hfbatch.structured import OutputCheck, check_for, load_response_format
from hfbatch.template import Template, TemplateError
from hfbatch.wire import StreamState, parse_completion

PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Z]"},
        "role": {"enum": ["admin", "user"]},
        "age": {"type": "integer", "minimum": 0},
        "pets": {"type": "array", "items": {"$ref": "#/$defs/pet"}, "maxItems": 2},
    },
    "required": ["name", "role"],
    "additionalProperties": False,
    "$defs": {"pet": {"type": "object", "properties": {"legs": {"type": "integer"}}, "required": ["legs"]}},
}


@pytest.mark.parametrize(
    ("instance", "problem"),
    [
        pytest.param({"name": "Ann", "role": "admin", "age": 3, "pets": [{"legs": 4}]}, None, id="valid"),
        pytest.param({"name": "Ann"}, "missing required key 'role'", id="required"),
        pytest.param({"name": "Ann", "role": "root"}, "is not one of", id="enum"),
        pytest.param({"name": "Ann", "role": "user", "age": "3"}, "age: expected integer", id="type"),
        pytest.param({"name": "Ann", "role": "user", "age": True}, "age: expected integer", id="bool-is-not-int"),
        pytest.param({"name": "Ann", "role": "user", "pets": [{"legs": "x"}]}, "pets[0].legs", id="nested"),
        pytest.param({"name": "Ann", "role": "user", "pets": [{}]}, "missing required key 'legs'", id="nested-req"),
        pytest.param({"name": "Ann", "role": "user", "pets": [{"legs": 1}] * 3}, "more than 2", id="max-items"),
        pytest.param({"name": "Ann", "role": "user", "extra": 1}, "unexpected key 'extra'", id="additional"),
        pytest.param({"name": "ann", "role": "user"}, "does not match", id="pattern"),
        pytest.param([], "expected object", id="not-an-object"),
    ],
)
def test_builtin_schema_checker(instance: Any, problem: str | None) -> None:
    """hfbatch's own checker covers types, required keys, enums, nested objects and arrays, and more."""
    errors = schema_errors(instance, PERSON)
    if problem is None:
        assert errors == []
    else:
        assert any(problem in e for e in errors), errors
    jsonschema = pytest.importorskip("jsonschema")
    assert jsonschema.Draft202012Validator(PERSON).is_valid(instance) is (problem is None)


def test_response_format_json_and_schema_files(tmp_path: Path) -> None:
    """'json' is json_object; a schema file, an OpenAI json_schema object or a whole response_format all work."""
    assert load_response_format("json") == {"type": "json_object"}
    bare = tmp_path / "my person.json"
    bare.write_text(json.dumps(PERSON))
    wire = {"type": "json_schema", "json_schema": {"name": "my_person", "schema": PERSON, "strict": True}}
    assert load_response_format(str(bare)) == wire
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"name": "p", "schema": PERSON, "strict": False}))
    assert load_response_format(str(named))["json_schema"] == {"name": "p", "schema": PERSON, "strict": False}
    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps(wire))
    assert load_response_format(str(whole)) == wire


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "no such file", id="missing"),
        pytest.param("{not json", "is not JSON", id="not-json"),
        pytest.param("[1]", "a JSON Schema is an object", id="array"),
    ],
)
def test_unusable_schema_files_are_job_errors(tmp_path: Path, content: str | None, message: str) -> None:
    """A schema file that is missing or not a schema stops the run before anything, naming the file."""
    path = tmp_path / f"bad-{message[:3]}.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(JobSpecError, match=message) as info:
        load_response_format(str(path))
    assert str(path) in str(info.value)


def test_a_job_files_schema_path_is_relative_to_the_job_file(tmp_path: Path) -> None:
    """response_format in a job file names a file beside the job; 'json' stays 'json'."""
    (tmp_path / "s.json").write_text(json.dumps(PERSON))
    job = tmp_path / "job.toml"
    job.write_text('input = "in.jsonl"\noutput = "out.jsonl"\nmodel = "m"\nresponse_format = "s.json"\n')
    spec = build_spec(load_job_file(job), {})
    assert spec.response_format == str(tmp_path / "s.json")
    assert spec.manifest_settings()["response_format"]["json_schema"]["schema"] == PERSON
    assert build_spec(load_job_file(job), {"response_format": "json"}).request_params()["response_format"] == {
        "type": "json_object"
    }


@pytest.mark.parametrize("use_jsonschema", [True, False], ids=["jsonschema", "builtin"])
def test_output_check_says_why_a_reply_is_refused(monkeypatch: pytest.MonkeyPatch, use_jsonschema: bool) -> None:
    """A reply must parse as JSON, be an object in json mode, and pass the schema; the reason says which."""
    if use_jsonschema:
        pytest.importorskip("jsonschema")
    else:
        monkeypatch.setitem(sys.modules, "jsonschema", None)
    check = OutputCheck({"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})
    assert check.problem('{"name": "Bo", "role": "user"}') is None
    assert "not JSON" in (check.problem('{"name": "Bo", ') or "")
    assert "breaks the schema" in (check.problem('{"name": "Bo"}') or "")
    json_mode = check_for({"type": "json_object"})
    assert json_mode is not None and json_mode.problem("[1, 2]") is not None and json_mode.problem("{}") is None
    assert check_for({"type": "text"}) is None and check_for(None) is None


@pytest.mark.parametrize(
    ("body", "about_n"),
    [
        pytest.param(
            '{"error": {"message": "n > 1 is not supported", "type": "invalid_request_error", "param": "n"}}',
            True,
            id="param-n",
        ),
        pytest.param('{"error": "Only n=1 is supported for this model"}', True, id="message-n-equals"),
        pytest.param('{"error": "\'n\' must be 1"}', True, id="message-quoted"),
        pytest.param('{"error": "Bad request: invalid parameter"}', False, id="other-400"),
        pytest.param('{"error": "max_tokens must be at least 1 and not n-gram"}', False, id="n-inside-words"),
    ],
)
def test_rejects_n_tells_a_refusal_of_n_from_other_400s(body: str, about_n: bool) -> None:
    """Only a 400 about `n` (its param, or its message naming n) switches a provider to one sample per request."""
    error = error_for_status(400, body, provider="p")
    assert isinstance(error, BadRequestError)
    assert rejects_n(error) is about_n


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("template", "row", "text"),
    [
        pytest.param("Q: {q}", {"q": "why"}, "Q: why", id="plain"),
        pytest.param("{x:.2f}", {"x": 1.5}, "1.50", id="format-spec"),
        pytest.param("Use:\n{words}", {"words": ["a", "b, c", 3]}, "Use:\na\nb, c\n3", id="list-one-per-line"),
        pytest.param("{meta}", {"meta": {"k": "v"}}, '{"k": "v"}', id="object-as-json"),
        pytest.param("{words[1]}", {"words": ["a", "b"]}, "b", id="list-index"),
        pytest.param("{meta[k]}", {"meta": {"k": "v"}}, "v", id="object-key"),
        pytest.param("[{tone|neutral}] {q}", {"q": "hi"}, "[neutral] hi", id="default-missing"),
        pytest.param("[{tone|neutral}] {q}", {"q": "hi", "tone": None}, "[neutral] hi", id="default-null"),
        pytest.param("[{tone|neutral}] {q}", {"q": "hi", "tone": "warm"}, "[warm] hi", id="default-unused"),
        pytest.param("{q}{note|}", {"q": "hi"}, "hi", id="empty-default"),
        pytest.param("{{literal}} {q}", {"q": "x"}, "{literal} x", id="braces"),
    ],
)
def test_template_renders(template: str, row: dict[str, Any], text: str) -> None:
    """Lists render as lines, objects as JSON, `{f|default}` fills missing or null fields."""
    assert Template(template).render(row) == text


def test_template_fields_and_required() -> None:
    """A field with a default is read but not required."""
    t = Template("{a} {b|x} {c[0]} {a.real}")
    assert t.fields == ("a", "b", "c") and t.required == ("a", "c")


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        pytest.param({}, "no 'q' field", id="missing"),
        pytest.param({"q": None}, "'q' is null", id="null"),
        pytest.param({"q": 5}, "cannot be filled", id="bad-index"),
    ],
)
def test_template_rows_that_cannot_fill_it(row: dict[str, Any], reason: str) -> None:
    """A row lacking a required field, or whose value cannot be indexed, says why."""
    with pytest.raises(TemplateError, match=reason):
        Template("{q[0]}").render(row)


def test_parquet_template_default_for_an_absent_column(tmp_path: Path) -> None:
    """A template field with a default may be absent from a Parquet input's columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hfbatch.inputs import InputSpec, Row, open_input

    pq.write_table(pa.table({"q": ["a", "b"]}), tmp_path / "in.parquet")
    with open_input(InputSpec(tmp_path / "in.parquet", template="{q} ({tone|plain})")) as reader:
        rows = [r for r in reader if isinstance(r, Row)]
    assert [r.messages[0]["content"] for r in rows] == ["a (plain)", "b (plain)"]


# --------------------------------------------------------------------------- replies


def completion(*choices: dict[str, Any]) -> bytes:
    """A chat.completion body with these messages as its choices."""
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": i, "message": m, "finish_reason": "stop"} for i, m in enumerate(choices)],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }
    return json.dumps(body).encode()


def test_parse_completion_keeps_every_choice_and_the_reasoning() -> None:
    """n choices are all read; reasoning comes from reasoning_content or reasoning; raw only when asked."""
    raw = completion(
        {"role": "assistant", "content": "A", "reasoning_content": "because"},
        {"role": "assistant", "content": "B", "reasoning": "other"},
    )
    result = parse_completion(raw, "p", "m")
    assert (result.text, result.reasoning, result.raw) == ("A", "because", None)
    assert [(c.text, c.reasoning) for c in result.choices] == [("A", "because"), ("B", "other")]
    assert parse_completion(raw, "p", "m", keep_raw=True).raw == json.loads(raw)
    single = parse_completion(completion({"role": "assistant", "content": "A"}), "p", "m")
    assert single.choices == () and [c.text for c in single.all_choices()] == ["A"]


def test_stream_state_separates_choices_and_rebuilds_the_completion() -> None:
    """Interleaved choices stay apart; reasoning, tool-call pieces and logprobs add up to the whole body."""
    state = StreamState("p", "m", keep_raw=True)

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        return json.dumps({"id": "c1", "created": 7, "model": "m:p", "choices": [
            {"index": index, "delta": delta, "finish_reason": finish, **extra}
        ]})  # fmt: skip

    shown = ""
    for payload in [
        chunk(0, {"role": "assistant", "reasoning_content": "hmm "}),
        chunk(1, {"role": "assistant", "content": "Sec"}),
        chunk(0, {"reasoning_content": "ok", "content": "Fir"}, logprobs={"content": [{"token": "Fir"}]}),
        chunk(1, {"content": "ond"}),
        chunk(0, {"content": "st"}, logprobs={"content": [{"token": "st"}]}),
        chunk(1, {"tool_calls": [{"index": 0, "id": "t1", "type": "function", "function": {"name": "f"}}]}),
        chunk(1, {"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]}),
        chunk(1, {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}, "tool_calls"),
        chunk(0, {}, "stop"),
        json.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 9}}),
        "[DONE]",
    ]:
        shown += state.feed(payload)
    result = state.finish(shown)
    assert (shown, result.reasoning, result.finish_reason) == ("First", "hmm ok", "stop")
    assert [(c.text, c.finish_reason) for c in result.choices] == [("First", "stop"), ("Second", "tool_calls")]
    body = result.raw
    assert body is not None and (body["id"], body["created"], body["model"]) == ("c1", 7, "m:p")
    first, second = body["choices"]
    assert first["message"] == {"role": "assistant", "content": "First", "reasoning_content": "hmm ok"}
    assert first["logprobs"] == {"content": [{"token": "Fir"}, {"token": "st"}]}
    assert second["message"]["tool_calls"] == [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    ]
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 9}


@pytest.mark.parametrize(
    ("fmt", "output", "message"),
    [
        pytest.param("csv", "out.jsonl", "unknown format 'csv' (choose from jsonl, parquet, openai)", id="unknown"),
        pytest.param("openai", "out.parquet", "the openai format writes .jsonl files", id="openai-parquet"),
        pytest.param("parquet", "out.jsonl", "the parquet format writes .parquet files", id="parquet-jsonl"),
    ],
)
def test_output_format_is_checked_against_the_registry_and_the_output(fmt: str, output: str, message: str) -> None:
    """An unknown output format, or one that cannot write the output's extension, is a job error naming both."""
    with pytest.raises(JobSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_spec({}, {"input": "in.jsonl", "output": output, "model": "m", "output_format": fmt})
