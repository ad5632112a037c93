"""Drives llm-router's OpenAI-compatible API with the official openai package.

Usage: python3 openai_client.py <gateway base URL>

Exits non-zero (with the failing assertion) when the router does not behave
as an OpenAI endpoint: chat completions with and without streaming (usage in
the final chunk when asked), routing hints in extra_body and headers, model
pinning, embeddings, the model list and models.retrieve, sampling settings,
and refusals of fields the router does not serve (legacy functions, a
misspelt privacy flag) with OpenAI's codes.
"""

import sys

import openai


def main(gateway: str) -> None:
    client = openai.OpenAI(
        base_url=f"{gateway}/function/llm-router/v1", api_key="unused", max_retries=0
    )

    # "auto" routes: a fast budget goes to Groq.
    completion = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "hi"}],
        extra_body={"task": "generate", "max_latency_ms": 200},
    )
    assert completion.object == "chat.completion", completion
    assert completion.model == "groq/llama-3.1-8b-instant", completion.model
    assert completion.choices[0].message.content, completion
    assert completion.choices[0].finish_reason == "stop", completion
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0

    # Hints in headers; privacy keeps it in the cluster.
    private = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "summarise my notes"}],
        extra_headers={"X-Route-Private": "true", "X-Route-Max-Latency-Ms": "5000"},
    )
    assert private.model.startswith("ollama/"), private.model

    # Streaming with usage in the last chunk.
    chunks = list(
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "tell me a story"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"task": "generate", "max_latency_ms": 5000},
        )
    )
    text = "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices
    )
    assert text, "no streamed text"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None, chunks[-1]
    assert chunks[-1].usage.completion_tokens > 0
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"], finishes

    # A catalogue model pins the route.
    models = [m.id for m in client.models.list()]
    assert "vertex/gemini-2.5-flash" in models, models
    pinned = client.chat.completions.create(
        model="vertex/gemini-2.5-flash",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2048,
    )
    assert pinned.model == "vertex/gemini-2.5-flash", pinned.model

    # Embeddings.
    embeddings = client.embeddings.create(model="auto", input=["one", "two"])
    assert len(embeddings.data) == 2 and len(embeddings.data[0].embedding) == 384
    # Token ids (cl100k_base), as LangChain's OpenAIEmbeddings() sends them:
    # "hello world" twice, once as text and once as tokens, embeds the same.
    tokens = client.embeddings.create(model="auto", input=[[15339, 1917], [791, 4062]])
    assert len(tokens.data) == 2, tokens
    text = client.embeddings.create(model="auto", input="hello world")
    assert tokens.data[0].embedding == text.data[0].embedding

    # Errors come back as OpenAI errors with the right status.
    try:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"task": "summarise"},
        )
    except openai.BadRequestError as error:
        assert error.status_code == 400
    else:
        raise AssertionError("an unknown task must be refused")

    # Legacy function calling is refused by name, never ignored.
    try:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "hi"}],
            functions=[{"name": "lookup", "parameters": {"type": "object"}}],
        )
    except openai.BadRequestError as error:
        assert error.status_code == 400
        assert error.param == "functions", error.body
        assert error.code == "unsupported_parameter", error.body
    else:
        raise AssertionError("functions= must be refused")

    # A misspelt privacy flag is an unknown parameter: the prompt must not
    # go to an external provider as if no flag had been sent.
    for misspelt in ("Private", "is_private", "privacy"):
        try:
            client.chat.completions.create(
                model="auto",
                messages=[{"role": "user", "content": "my medical records"}],
                extra_body={misspelt: True},
            )
        except openai.BadRequestError as error:
            assert error.status_code == 400
            assert error.param == misspelt, error.body
            assert error.code == "unknown_parameter", error.body
            assert "private" in error.message, error.message
        else:
            raise AssertionError(f"{misspelt} must be refused")

    # Sampling settings are taken (and passed on), and a model is retrieved
    # by id.
    seeded = client.chat.completions.create(
        model="groq/llama-3.1-8b-instant",
        messages=[{"role": "user", "content": "hi"}],
        seed=7,
        top_p=0.5,
        presence_penalty=0.1,
        frequency_penalty=0.1,
        user="u-1",
        stop=["END"],
        max_completion_tokens=64,
        n=1,
    )
    assert seeded.model == "groq/llama-3.1-8b-instant", seeded.model
    retrieved = client.models.retrieve("vertex/gemini-2.5-flash")
    assert retrieved.id == "vertex/gemini-2.5-flash", retrieved
    try:
        client.models.retrieve("nope/none")
    except openai.NotFoundError as error:
        assert error.code == "model_not_found", error.body
    else:
        raise AssertionError("an unknown model must be 404")

    # Provider failures arrive as the SDK's own exceptions, with OpenAI's
    # codes and the provider's wait (the Groq emulator asks for 6 s).
    pinned_groq = dict(model="groq/llama-3.1-8b-instant", extra_body={"max_latency_ms": 10000})
    try:
        client.chat.completions.create(
            messages=[{"role": "user", "content": "hi [[emulator:rate_limit]]"}], **pinned_groq
        )
    except openai.RateLimitError as error:
        assert error.code == "rate_limit_exceeded", error.body
        assert error.response.headers.get("retry-after") == "6", error.response.headers
    else:
        raise AssertionError("a rate limit must be a 429")
    try:
        client.chat.completions.create(
            messages=[{"role": "user", "content": "hi [[emulator:context_too_long]]"}],
            **pinned_groq,
        )
    except openai.BadRequestError as error:
        assert error.code == "context_length_exceeded", error.body
    else:
        raise AssertionError("a context overflow must be a 400")

    print("openai client: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1])
