"""Local emulators of the OpenAI, Anthropic and Gemini streaming APIs, for tests and benchmarks.

One server answers all three (routed by path), byte for byte in each API's wire format:

    async with Emulator() as emu:
        emu.script(Script(text=("Hel", "lo")))                          # next request, any model
        emu.script(Script(status=429, retry_after=2), model="gpt-5-mini")  # next gpt-5-mini request
        emu.default(Script(text="slow answer", delay=0.05))              # every unscripted request
        client = AsyncOpenAI(base_url=emu.openai_base_url, api_key="k", max_retries=0)
        ...
        assert emu.last.body["stream"] is True
        assert await emu.wait_disconnect()                               # the client hung up

Faults (counted in streamed tokens): `status` (429/500/503/529 with the provider's error body),
`error_after` (mid-stream error event), `drop_after` (connection cut, chunked body unterminated),
`stall_after` (silence until the client leaves), `no_finish` (clean end, no finish reason), `delay`
(per token) and `byte_split` (events written in small HTTP chunks, splitting multi-byte characters).

Requests are validated first, the way each real API does (`openai_request.py`, `anthropic_request.py`,
`gemini_request.py`): an unknown or malformed field, an out-of-range value or a model rule broken gets that
API's own 400 body, and `RecordedRequest.rejected` says why. A request that demands structure is answered in
kind (`answers.py`): JSON for a schema or JSON mode (`Script(json=...)` picks the value), a call of the forced
tool; logprobs stream when asked.

From another process: `python -m tests.emulators --port 9100`, then POST JSON scripts to
`/_emulator/script` (`{"script": {...}, "model": "..."}`), `/_emulator/default`, `/_emulator/reset`,
and read `GET /_emulator/requests`.
"""

from tests.emulators.script import RecordedRequest, Script, ToolCallScript, split_words
from tests.emulators.server import Emulator

__all__ = ["Emulator", "RecordedRequest", "Script", "ToolCallScript", "split_words"]
