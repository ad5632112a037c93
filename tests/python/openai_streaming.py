"""The official openai client streaming through the real gateway and watchdog.

Usage: python3 openai_streaming.py <gateway base URL> <emulator tokens per second>

The client is configured as the README says: default_headers with
Accept: text/event-stream, without which of-watchdog and the gateway buffer
the answer (the client sends Accept: application/json even with stream=True).
Checks that the chunks arrive as they are generated, that the same client's
non-streamed calls still work, and prints the timing of both configurations.
"""

import sys
import time

import openai


def timed_stream(client):
    start = time.monotonic()
    arrivals = []
    text = ""
    for chunk in client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "tell me a story"}],
        stream=True,
        max_tokens=24,
        extra_body={"task": "generate", "max_latency_ms": 30000},
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic() - start) * 1000.0)
            text += chunk.choices[0].delta.content
    return arrivals, text


def bursts(arrivals):
    """Groups of chunks that arrived less than 20 ms apart."""
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    return 1 + sum(1 for g in gaps if g > 20.0) if arrivals else 0


def summary(arrivals):
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:]))
    return (
        f"{len(arrivals)} content chunks, first at {arrivals[0]:.0f} ms, "
        f"last at {arrivals[-1]:.0f} ms, {bursts(arrivals)} bursts (>20 ms apart), "
        f"gap p50 {gaps[len(gaps) // 2]:.1f} ms, max {gaps[-1]:.1f} ms"
    )


def main(gateway: str, tokens_per_second: float) -> None:
    base_url = f"{gateway}/function/llm-router/v1"
    # As the README says: Accept: text/event-stream on every call.
    client = openai.OpenAI(
        base_url=base_url,
        api_key="unused",
        max_retries=0,
        default_headers={"Accept": "text/event-stream"},
    )
    arrivals, text = timed_stream(client)
    assert text, "no streamed text"
    assert len(arrivals) >= 8, arrivals
    print(f"openai client, Accept: text/event-stream: {summary(arrivals)}")
    # Generated 1/tokens_per_second apart: at least half arrive on their own.
    assert bursts(arrivals) * 2 >= len(arrivals), (
        f"chunks must arrive as generated: {summary(arrivals)}"
    )

    # The header is safe for calls that do not stream: JSON comes back.
    completion = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2048,
        extra_body={"task": "generate", "max_latency_ms": 30000},
    )
    assert completion.object == "chat.completion", completion
    assert completion.choices[0].message.content, completion
    models = [m.id for m in client.models.list()]
    assert "groq/llama-3.1-8b-instant" in models, models

    # The client's default: buffered by the watchdog and the gateway.
    default = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    arrivals, text = timed_stream(default)
    assert text, "no streamed text"
    print(f"openai client, default headers: {summary(arrivals)}")
    # Flushed by the watchdog's 4 KiB buffer, in a few bursts.
    assert bursts(arrivals) * 2 < len(arrivals), (
        f"without the header the answer arrives in bursts: {summary(arrivals)}"
    )

    print("openai streaming: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
