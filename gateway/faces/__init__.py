"""Faces: the ways a client can follow a stream. Each is an encoder plus a channel, run by `sessions.pump.follow`.

- gateway events over SSE (`POST /v1/chat/stream`, `GET /v1/streams/{id}/events`): `events.EventFrames` on an
  `sse.SSEChannel`;
- gateway events over the WebSocket (`/v1/ws`, `?batch=1`): `socket.SocketFrames` on a `socket.SocketChannel`;
- OpenAI Chat Completions (`POST /v1/chat/completions`): `chat_completions.CompletionChunks` on an
  `sse.SSEChannel`, or `http.GatheredReply` (over the face's answer) on an `http.BodyChannel`;
- OpenAI Responses (`POST /v1/responses`): `responses.ResponseEvents` on an `sse.SSEChannel`, or
  `responses.ResponseReply` on an `http.BodyChannel` (both read one `responses.Output`);
- Anthropic Messages (`POST /v1/messages`): `messages.MessageEvents` on an `sse.SSEChannel`, or a
  `messages.MessageAnswer` gathered by `http.GatheredReply` on an `http.BodyChannel`;
- live spend (`GET /v1/usage/stream`): the bus (`spend.SpendSource`) through `spend.SpendFrames` on an
  `sse.SSEChannel`.

Adding a face (say another provider's API) is one module here and one route:

1. The encoder: `events(batch) -> out | None` for a batch of log entries (`entry.event` is the typed event from
   `sessions.events`; `entry.data` its JSON in the gateway's own protocol), `failed(error)` for a follow that
   cannot go on, and `end()` for what comes last. Keep `events` cheap: it runs per token. Build the reply from
   typed events; never parse `entry.data`.
2. The channel: usually `sse.SSEChannel` (streaming; `face=` picks the error body of refusals) or
   `http.BodyChannel` (one body at the end). Channels never need to change for a new face.
3. Errors: give the route's `APIRouter` `route_class=speaking(face)` (`gateway.errors`) so its errors use that
   face's body; if the face is new, add its body function and a column to `gateway.errors.TABLE`.
4. The route: authenticate (`CurrentUser`), read the body (`JsonBody[Model]`), start the stream
   (`services.sessions.start`), and return `FollowResponse(StreamSource(stream), encoder, channel,
   on_disconnect="cancel")` ("cancel" for clients that never resume, "detach" for those that do).
"""
