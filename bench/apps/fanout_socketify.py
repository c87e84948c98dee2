"""Fan-out benchmark for socketify (uWebSockets' C++ server): its native topic publish.

`/sub`: on open, `ws.subscribe("bench")` then send the text "ok". `/pub`: every message is
`app.publish("bench", message, opcode)`: uWebSockets builds the frame once and corks each
subscriber's write. Compression off, large payload limit, no idle timeout (the load client
does not ping). `GET /`: 200.

    python fanout_socketify.py --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import argparse

from socketify import App, CompressOptions, OpCode

TOPIC = "bench"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app = App()

    def sub_open(ws):  # type: ignore[no-untyped-def]
        ws.subscribe(TOPIC)
        ws.send("ok", OpCode.TEXT)

    def pub_message(ws, message, opcode):  # type: ignore[no-untyped-def]
        app.publish(TOPIC, message, opcode)

    common = {
        "compression": CompressOptions.DISABLED,
        "max_payload_length": 16 * 1024 * 1024,
        "idle_timeout": 0,
        "max_backpressure": 64 * 1024 * 1024,
    }
    app.ws("/sub", {**common, "open": sub_open, "message": lambda ws, m, op: None})
    app.ws("/pub", {**common, "message": pub_message})
    app.get("/", lambda res, req: res.end("ok"))
    app.listen({"host": args.host, "port": args.port}, lambda config: None)
    app.run()


if __name__ == "__main__":
    main()
