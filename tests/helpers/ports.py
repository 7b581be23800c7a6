"""A TCP port for a test's `accelerate launch`, free at the time of asking.

Fixed port numbers collide when two test sessions (or anything else) run on one machine; the OS picks one here.
"""

import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
