"""WebSocket side of fastws: RFC 6455 framing, handshake, deflate, the session and its shell.

session.py, protocol.py and pubsub.py are also built as extension modules of the same names
(setup.py); FASTWS_NO_EXTENSIONS=1 loads their sources instead (see fastws/__init__.py).
"""
