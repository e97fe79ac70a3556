"""E-stop and re-arm inputs: a loopback TCP line protocol and POSIX signals.

`ControlServer("tcp://127.0.0.1:5599", daemon)` accepts one command per line:
`estop` (stop this control tick, latched), `arm` (re-arm after a stop),
`status` (one JSON line back), `goal TEXT` (the instruction of the current
goal from the next inference on; `goal` alone clears it; refused with an error
reply if the policy takes no instructions). It runs in its own thread and only sets flags
the control loop reads at the start of every tick. It binds to loopback only:
an e-stop port is not something to expose.

`install_signal_handlers(daemon)`: SIGUSR1 = e-stop, SIGTERM/SIGINT = e-stop
and quit (the loop's `finally:` stops the driver).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import signal
import socket
import threading

from robolearn.errors import UserError
from robolearn.goal import Goal

log = logging.getLogger(__name__)


def parse_tcp(addr: str) -> tuple[str, int]:
    if not addr.startswith("tcp://") or ":" not in addr[6:]:
        raise UserError(f"control_socket: expected tcp://HOST:PORT, got {addr!r}")
    host, port = addr[6:].rsplit(":", 1)
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ControlServer:
    def __init__(self, addr: str, daemon):
        host, port = parse_tcp(addr)
        if not is_loopback(host):
            raise UserError(f"control_socket: {addr}: the e-stop socket binds to loopback only")
        self.daemon = daemon
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="control-socket", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb", buffering=0) as f:
            for raw in f:
                text = raw.strip().decode("utf-8", "replace")
                word, _, rest = text.partition(" ")
                line = word.lower()
                if line == "estop":
                    self.daemon.request_estop()
                    reply = {"ok": True}
                elif line == "arm":
                    self.daemon.request_rearm()
                    reply = {"ok": True}
                elif line == "status":
                    goal = self.daemon.goal
                    reply = {"ok": True, "mode": self.daemon.mode, "tick": self.daemon.tick_n,
                             "goal": goal.modalities if goal else [], "instruction": (goal and goal.instruction) or ""}
                elif line == "goal":
                    reply = self._set_instruction(rest.strip())
                else:
                    reply = {"ok": False, "error": f"unknown command {text[:40]!r} (estop | arm | status | goal TEXT)"}
                f.write((json.dumps(reply) + "\n").encode())

    def _set_instruction(self, instruction: str) -> dict:
        """A new instruction, keeping the current goal image / state."""
        current = self.daemon.goal or Goal()
        goal = Goal(instruction or None, current.images, current.state)
        try:
            self.daemon.set_goal(goal if goal.modalities else None)
        except UserError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "instruction": instruction}

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(1.0)


def send_command(addr: str, command: str, timeout: float = 2.0) -> dict:
    host, port = parse_tcp(addr)
    with socket.create_connection((host, port), timeout=timeout) as s, s.makefile("rwb", buffering=0) as f:
        f.write((command + "\n").encode())
        return json.loads(f.readline())


def install_signal_handlers(daemon) -> None:
    def estop(signum, frame):
        daemon.request_estop()

    def quit_(signum, frame):
        daemon.request_estop()
        daemon.request_quit()

    signal.signal(signal.SIGUSR1, estop)
    signal.signal(signal.SIGTERM, quit_)
    signal.signal(signal.SIGINT, quit_)
