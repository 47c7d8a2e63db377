"""The simulated model's answers: n samples, structured output and reasoning, over real loopback HTTP."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfbatch.sim import (
    Fault,
    SimConfig,
    SimModel,
    SimProvider,
    SimServer,
    instance_for,
    reasoning_for,
    reply_for,
    schema_errors,
)
from hfbatch.sim.schema import violate

AUTH = {"Authorization": "Bearer hf_sim_token"}
MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "say three words"}]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 3, "maxLength": 12},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "member": {"type": "boolean"},
        "nickname": {"type": ["string", "null"]},
        "nothing": {"type": "null"},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "address": {"$ref": "#/$defs/Address"},
        "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}},
        "contact": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"email": {"type": "string"}}}]},
    },
    "required": ["name", "age", "address"],
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}},
            "required": ["city", "zip"],
        },
        "Pet": {"type": "object", "properties": {"kind": {"const": "cat"}, "legs": {"type": "integer"}}},
    },
}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}


def one_provider(*faults: Fault, **fields: Any) -> SimConfig:
    """A model `o/m` served by provider `p` alone, with the given faults and SimProvider fields."""
    return SimConfig(models=(SimModel("o/m", (SimProvider("p", faults=faults, **fields),)),))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def chat(session: aiohttp.ClientSession, sim: SimServer, **fields: Any) -> tuple[int, Any]:
    """POST a chat request for `o/m`; return (status, decoded JSON body)."""
    payload = {"model": "o/m", "messages": MESSAGES, **fields}
    async with session.post(f"{sim.api_base}/chat/completions", json=payload, headers=AUTH) as resp:
        return resp.status, json.loads(await resp.text())


async def stream_chunks(session: aiohttp.ClientSession, sim: SimServer, **fields: Any) -> list[dict[str, Any]]:
    """POST a streamed chat request for `o/m`; return its decoded chunks (without [DONE])."""
    payload = {"model": "o/m", "messages": MESSAGES, "stream": True, **fields}
    async with session.post(f"{sim.api_base}/chat/completions", json=payload, headers=AUTH) as resp:
        assert resp.status == 200
        text = await resp.text()
    payloads = [event.removeprefix("data: ") for event in text.split("\n\n") if event]
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def joined(chunks: list[dict[str, Any]], field: str) -> dict[int, str]:
    """Per choice index, the concatenation of `field` over all deltas."""
    texts: dict[int, str] = defaultdict(str)
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get(field) or ""
    return dict(texts)


# --- n samples -------------------------------------------------------------------------------


async def test_n_returns_n_distinct_deterministic_choices(session: aiohttp.ClientSession) -> None:
    """n=3 gives choices 0..2; choice 0 is the usual reply, the others distinct; usage counts them all."""
    async with SimServer(one_provider()) as sim:
        status, data = await chat(session, sim, n=3)
        _, again = await chat(session, sim, n=3)
    assert status == 200
    expected = [reply_for(MESSAGES, None, sample=i) for i in range(3)]
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert [c["message"]["content"] for c in data["choices"]] == [r.text for r in expected]
    assert expected[0] == reply_for(MESSAGES, None)
    assert len({r.text for r in expected}) == 3
    assert [c["message"] for c in again["choices"]] == [c["message"] for c in data["choices"]]
    assert data["usage"]["completion_tokens"] == sum(r.completion_tokens for r in expected)
    assert data["usage"]["prompt_tokens"] == expected[0].prompt_tokens


async def test_n_streamed_chunks_carry_their_index(session: aiohttp.ClientSession) -> None:
    """Streaming n=2: each choice's deltas join to its text, and each gets its own finish chunk."""
    async with SimServer(one_provider()) as sim:
        chunks = await stream_chunks(session, sim, n=2, stream_options={"include_usage": True})
    assert joined(chunks, "content") == {i: reply_for(MESSAGES, None, sample=i).text for i in range(2)}
    finishes = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [(f["index"], f["finish_reason"]) for f in finishes] == [(0, "stop"), (1, "stop")]
    firsts = [c["choices"][0] for c in chunks[:2]]
    assert [(f["index"], f["delta"]["role"]) for f in firsts] == [(0, "assistant"), (1, "assistant")]
    assert chunks[-1]["usage"]["completion_tokens"] == 2 * reply_for(MESSAGES, None).completion_tokens


async def test_reject_n_and_max_n(session: aiohttp.ClientSession) -> None:
    """`reject_n` answers n > 1 with a 400 error object; `max_n` silently caps the choices."""
    async with SimServer(one_provider(reject_n=True)) as sim:
        status, data = await chat(session, sim, n=2)
        assert status == 400
        assert data == {
            "error": {
                "message": "n > 1 is not supported",
                "type": "invalid_request_error",
                "param": "n",
                "code": "invalid_request_error",
            }
        }
        assert (await chat(session, sim, n=1))[0] == 200
        assert sim.counts()["p"]["by_outcome"] == {"200": 1, "400": 1}
        assert sim.billing()["total"]["replies"] == 1
    async with SimServer(one_provider(max_n=2)) as sim:
        status, data = await chat(session, sim, n=5)
    assert status == 200 and len(data["choices"]) == 2


@pytest.mark.parametrize("n", [0, -1, "2", 1.5, True])
async def test_bad_n_is_422(session: aiohttp.ClientSession, n: object) -> None:
    """`n` must be an integer >= 1."""
    async with SimServer(one_provider()) as sim:
        status, data = await chat(session, sim, n=n)
    assert status == 422 and "`n`" in data["error"]


# --- structured output -----------------------------------------------------------------------


async def test_json_object_reply(session: aiohttp.ClientSession) -> None:
    """response_format json_object: the content is a JSON object carrying the reply text."""
    async with SimServer(one_provider()) as sim:
        _, data = await chat(session, sim, response_format={"type": "json_object"})
    content = json.loads(data["choices"][0]["message"]["content"])
    assert content == {"reply": reply_for(MESSAGES, None).text}


async def test_json_schema_reply_is_valid_and_deterministic(session: aiohttp.ClientSession) -> None:
    """response_format json_schema: a valid instance, the same for the same request, streamed or not."""
    async with SimServer(one_provider()) as sim:
        _, data = await chat(session, sim, response_format=JSON_SCHEMA_FORMAT)
        _, again = await chat(session, sim, response_format=JSON_SCHEMA_FORMAT)
        chunks = await stream_chunks(session, sim, response_format=JSON_SCHEMA_FORMAT)
        _, two = await chat(session, sim, response_format=JSON_SCHEMA_FORMAT, n=2)
    content = data["choices"][0]["message"]["content"]
    assert schema_errors(json.loads(content), PERSON) == []
    assert again["choices"][0]["message"]["content"] == content
    assert joined(chunks, "content") == {0: content}
    assert len(chunks) > 5  # the JSON arrives in pieces, as a model writes it
    samples = [json.loads(c["message"]["content"]) for c in two["choices"]]
    assert all(schema_errors(s, PERSON) == [] for s in samples) and samples[0] != samples[1]


async def test_json_schema_cut_by_max_tokens(session: aiohttp.ClientSession) -> None:
    """A structured reply longer than max_tokens is cut mid-JSON with finish_reason `length`."""
    async with SimServer(one_provider()) as sim:
        _, data = await chat(session, sim, response_format=JSON_SCHEMA_FORMAT, max_tokens=3)
    choice = data["choices"][0]
    assert choice["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3
    with pytest.raises(ValueError):
        json.loads(choice["message"]["content"])


async def test_invalid_json_alternates_not_json_and_schema_violation(session: aiohttp.ClientSession) -> None:
    """invalid_json: the 1st hit is not JSON, the 2nd JSON the schema rejects, the 3rd not JSON again."""
    async with SimServer(one_provider(Fault("invalid_json", first=3))) as sim:
        contents = [
            (await chat(session, sim, response_format=JSON_SCHEMA_FORMAT))[1]["choices"][0]["message"]["content"]
            for _ in range(4)
        ]
        _, plain = await chat(session, sim)
        counts = sim.counts()["p"]["by_outcome"]
        billed = sim.billing()["total"]["replies"]
    for broken in (contents[0], contents[2]):
        with pytest.raises(ValueError):
            json.loads(broken)
    errors = schema_errors(json.loads(contents[1]), PERSON)
    assert errors and "missing required key 'name'" in errors[0]
    assert schema_errors(json.loads(contents[3]), PERSON) == []
    assert plain["choices"][0]["message"]["content"] == reply_for(MESSAGES, None).text
    assert counts == {"200": 5} and billed == 5


async def test_invalid_json_on_json_object_is_not_an_object(session: aiohttp.ClientSession) -> None:
    """With json_object, the schema-violating variant is valid JSON that is not an object."""
    async with SimServer(one_provider(Fault("invalid_json"))) as sim:
        replies = [(await chat(session, sim, response_format={"type": "json_object"}))[1] for _ in range(2)]
    with pytest.raises(ValueError):
        json.loads(replies[0]["choices"][0]["message"]["content"])
    assert not isinstance(json.loads(replies[1]["choices"][0]["message"]["content"]), dict)


async def test_provider_without_structured_output_ignores_response_format(session: aiohttp.ClientSession) -> None:
    """`supports_structured_output = false`: plain text whatever the response_format."""
    async with SimServer(one_provider(supports_structured_output=False)) as sim:
        _, data = await chat(session, sim, response_format=JSON_SCHEMA_FORMAT)
    assert data["choices"][0]["message"]["content"] == reply_for(MESSAGES, None).text


@pytest.mark.parametrize(
    "fmt", [{"type": "xml"}, "json", {"type": "json_schema"}, {"type": "json_schema", "json_schema": {"schema": 1}}]
)
async def test_bad_response_format_is_422(session: aiohttp.ClientSession, fmt: object) -> None:
    """A response_format of unknown type or without a schema object is a validation error."""
    async with SimServer(one_provider()) as sim:
        status, data = await chat(session, sim, response_format=fmt)
    assert status == 422 and "response_format" in data["error"]


@given(st.text(min_size=1, max_size=20))
def test_instances_are_valid_for_any_seed(seed: str) -> None:
    """Whatever the seed, the generated instance is valid and its violation is not."""
    instance = instance_for(PERSON, seed)
    assert schema_errors(instance, PERSON) == []
    assert instance_for(PERSON, seed) == instance
    assert schema_errors(violate(instance, PERSON), PERSON)


def test_schema_subset_edge_cases() -> None:
    """Scalars, type lists, tuples and recursive $refs all yield valid instances; violations break them."""
    schemas: list[Any] = [
        {"type": "string"},
        {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 7},
        {"type": "number", "minimum": -3.5, "maximum": -3.5},
        {"type": ["null", "boolean"]},
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2},
        {"$ref": "#/$defs/Node", "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#"}}}}},
        {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}]},
    ]
    for schema in schemas:
        instance = instance_for(schema, "seed")
        assert schema_errors(instance, schema) == [], (schema, instance)
        assert schema_errors(violate(instance, schema), schema), schema
    assert instance_for({"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 7}, "x") == 6


# --- reasoning -------------------------------------------------------------------------------


async def test_reasoning_content_besides_content(session: aiohttp.ClientSession) -> None:
    """A reasoning provider adds reasoning_content; its words count as completion (reasoning) tokens."""
    async with SimServer(one_provider(reasoning=True)) as sim:
        _, data = await chat(session, sim)
        chunks = await stream_chunks(session, sim)
    thought = reasoning_for(MESSAGES)
    reply = reply_for(MESSAGES, None)
    message = data["choices"][0]["message"]
    assert message == {"role": "assistant", "content": reply.text, "reasoning_content": thought}
    assert data["usage"]["completion_tokens"] == reply.completion_tokens + len(thought.split())
    assert data["usage"]["completion_tokens_details"] == {"reasoning_tokens": len(thought.split())}
    kinds = ["reasoning_content" if "reasoning_content" in c["choices"][0]["delta"] else "content" for c in chunks[:-1]]
    assert kinds == sorted(kinds, reverse=True) and "reasoning_content" in kinds  # all reasoning first
    assert joined(chunks, "reasoning_content") == {0: thought}
    assert joined(chunks, "content") == {0: reply.text}


async def test_reasoning_spends_max_tokens_first(session: aiohttp.ClientSession) -> None:
    """With max_tokens, reasoning words come out of the budget before the content's."""
    n_thought = len(reasoning_for(MESSAGES).split())
    async with SimServer(one_provider(reasoning=True)) as sim:
        _, data = await chat(session, sim, max_tokens=n_thought + 2)
    choice = data["choices"][0]
    assert choice["message"]["content"] == reply_for(MESSAGES, 2).text
    assert choice["finish_reason"] == "length"


async def test_reasoning_only_has_no_content(session: aiohttp.ClientSession) -> None:
    """`reasoning_only`: content null, everything in reasoning_content, finish_reason `length`."""
    async with SimServer(one_provider(reasoning_only=True)) as sim:
        _, data = await chat(session, sim)
        chunks = await stream_chunks(session, sim)
    choice = data["choices"][0]
    assert choice["message"]["content"] is None
    assert choice["message"]["reasoning_content"] == reasoning_for(MESSAGES)
    assert choice["finish_reason"] == "length"
    assert joined(chunks, "content") == {0: ""}
    assert joined(chunks, "reasoning_content") == {0: reasoning_for(MESSAGES)}
