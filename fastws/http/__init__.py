"""HTTP/1.1 side of fastws: the asyncio protocol around httptools."""
