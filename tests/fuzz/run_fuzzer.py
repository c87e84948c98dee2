"""Run one fuzz target under atheris (libFuzzer), or replay inputs through it.

    python tests/fuzz/run_fuzzer.py frames --asgi 1 --deflate 0 --seconds 60
    python tests/fuzz/run_fuzzer.py http --seconds 60 --corpus build/fuzz/http
    python tests/fuzz/run_fuzzer.py frames crash-1234abcd...        # replay (no atheris needed)

fastws's Python modules are instrumented for coverage (atheris.instrument_imports); the compiled
codec is not (that needs a clang build with -fsanitize=fuzzer), so coverage is steered by the
pure twin and the compiled reader is checked against it on every input. libFuzzer stops the run
at the first crash, uncaught exception (an invariant ``Violation`` included), input that takes
over --timeout-per-input seconds, or process RSS over --rss-limit-mb, and writes the input to
``<artifacts>/crash-*``, ``timeout-*`` or ``oom-*``; the exit status is then non-zero.

Seeds (targets.<name>_seeds()) are written to a fresh directory on each run; new interesting
inputs go to --corpus (a temporary directory by default, so nothing lands in the tree).
Without atheris (``pip install atheris``; Linux x86-64/aarch64 wheels for CPython 3.8-3.12),
--seconds runs fall back to random mutation of the seeds, which is far weaker; the test session
reports that.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
for entry in (str(REPO), str(TESTS)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

# libFuzzer's tokens for the HTTP and frame targets.
DICTIONARY = [
    b"GET",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"\r\n",
    b"\r\n\r\n",
    b"Upgrade: websocket",
    b"Connection: Upgrade",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
    b"Sec-WebSocket-Extensions: ",
    b"permessage-deflate",
    b"client_max_window_bits",
    b"server_max_window_bits=",
    b"server_no_context_takeover",
    b"client_no_context_takeover",
    b"Transfer-Encoding: chunked",
    b"Content-Length: ",
    b"Expect: 100-continue",
    b"\x00\x00\xff\xff",
    b"\x7f\xff\xff\xff\xff\xff\xff\xff",
    b"\x80\x00\x00\x00\x00\x00\x00\x00",
    b"\xed\xa0\x80",
    b"\xf4\x90",
    b"\xef\xbf\xbd",
    b"\x03\xe8",
]


def dictionary_line(token: bytes) -> str:
    """A libFuzzer -dict entry: printable ASCII as is, everything else (and quote and
    backslash) as \\xHH, the only escapes libFuzzer reads."""
    return (
        '"'
        + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}" for b in token)
        + '"\n'
    )


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=["frames", "http", "handshake", "response_headers"])
    parser.add_argument("--asgi", type=int, choices=[0, 1], help="frames: force asgi off/on")
    parser.add_argument(
        "--deflate", type=int, choices=[0, 1], help="frames: force rsv1_allowed off/on"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the run")
    parser.add_argument("--corpus", help="directory that keeps new inputs (default: temporary)")
    parser.add_argument("--artifacts", default=".", help="where crash/timeout/oom inputs go")
    parser.add_argument("--seed", type=int, help="libFuzzer -seed (default: random)")
    parser.add_argument("--timeout-per-input", type=int, default=10)
    parser.add_argument("--rss-limit-mb", type=int, default=1024)
    parser.add_argument("inputs", nargs="*", help="files to replay instead of fuzzing")
    return parser.parse_known_args(argv)


def options(args: argparse.Namespace) -> dict[str, bool]:
    out = {}
    if args.target == "frames":
        if args.asgi is not None:
            out["asgi"] = bool(args.asgi)
        if args.deflate is not None:
            out["deflate_on"] = bool(args.deflate)
    return out


def replay(args: argparse.Namespace) -> int:
    from fuzz import targets

    func = targets.target(args.target, **options(args))
    for name in args.inputs:
        data = Path(name).read_bytes()
        print(f"replaying {name} ({len(data)} bytes)", flush=True)
        func(data)
    print("no failure", flush=True)
    return 0


def fallback(args: argparse.Namespace) -> int:
    """No atheris: mutate the seeds at random for --seconds (weak, but not nothing)."""
    from fuzz import targets

    func = targets.target(args.target, **options(args))
    seeds = targets.TARGETS[args.target][1]()
    max_len = targets.TARGETS[args.target][2]
    rng = random.Random(args.seed)
    deadline = time.monotonic() + args.seconds
    runs = 0
    start = time.monotonic()
    while time.monotonic() < deadline:
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            op = rng.randrange(4)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[pos:pos] = os.urandom(rng.randint(1, 8))
            elif op == 2:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                other = rng.choice(seeds)
                data[pos:] = other[rng.randrange(len(other) + 1) :]
        data = bytes(data[:max_len])
        try:
            func(data)
        except BaseException:
            path = Path(args.artifacts) / f"crash-fallback-{os.getpid()}-{runs}"
            path.write_bytes(data)
            print(f"crash: input written to {path}", flush=True)
            raise
        runs += 1
    elapsed = time.monotonic() - start
    print(f"Done {runs} runs in {elapsed:.0f} second(s) (fallback mutator, no atheris)")
    return 0


def main(argv: list[str]) -> int:
    args, libfuzzer_args = parse_args(argv)
    if args.inputs:
        return replay(args)
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: using the fallback mutator", flush=True)
        return fallback(args)

    # Instrument fastws's Python code (the pure codec, deflate, handshake, both protocols).
    with atheris.instrument_imports(include=["fastws"]):
        import fastws._speedups_py  # noqa: F401
        import fastws.config  # noqa: F401
        import fastws.http.protocol  # noqa: F401
        import fastws.server  # noqa: F401
        import fastws.ws.deflate  # noqa: F401
        import fastws.ws.handshake  # noqa: F401
        import fastws.ws.protocol  # noqa: F401
    from fuzz import targets

    name = args.target
    func = targets.target(name, **options(args))
    max_len = targets.TARGETS[name][2]

    work = Path(tempfile.mkdtemp(prefix=f"fastws-fuzz-{name}-"))
    seeds = work / "seeds"
    seeds.mkdir()
    for i, seed in enumerate(targets.TARGETS[name][1]()):
        (seeds / f"seed-{i:03d}").write_bytes(seed)
    corpus = Path(args.corpus) if args.corpus else work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    dictionary = work / "dict.txt"
    dictionary.write_text("".join(dictionary_line(token) for token in DICTIONARY))
    Path(args.artifacts).mkdir(parents=True, exist_ok=True)
    if name == "http":
        targets.http_world()  # build the loop and configs before the clock starts

    fuzzer_argv = [
        sys.argv[0],
        f"-max_total_time={max(1, int(args.seconds))}",
        f"-timeout={args.timeout_per_input}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-max_len={max_len}",
        f"-artifact_prefix={Path(args.artifacts).resolve()}/",
        f"-dict={dictionary}",
        "-print_final_stats=1",
        *([f"-seed={args.seed}"] if args.seed is not None else []),
        *libfuzzer_args,
        str(corpus),
        str(seeds),
    ]
    print("libFuzzer:", " ".join(fuzzer_argv[1:]), flush=True)

    def one_input(data: bytes) -> None:
        func(data)

    atheris.Setup(fuzzer_argv, one_input)
    atheris.Fuzz()
    return 0  # not reached: libFuzzer exits the process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
