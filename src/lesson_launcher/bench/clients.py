"""The benchmark's load generator: hundreds of Socket.IO clients per process, on one thread.

Why not python-socketio's ``socketio.Client``, which the tests use? It starts
an OS thread for every message it receives (engineio.client.Client.
_receive_packet calls ``_trigger_event("message", ..., run_async=True)``).
Measured here, 50 clients x 200 broadcasts from the bare gevent server: 147 us
of client CPU per message received, against 7 us of server CPU per message
sent. On 2 cores no number of processes makes up for a factor of 20.

This client costs 3 us per message. It opens a WebSocket straight away
(``transport=websocket``, no long-polling first); wsproto (the sans-IO
WebSocket library under simple-websocket) does the HTTP upgrade and frames
what the client sends (masked, as RFC 6455 requires of clients). The server's
frames are read by read_frames() below: 0.4 us a frame, where wsproto's
reader takes 6 us, as much as the server spends sending one. Inside the
frames: Engine.IO v4 packets (``0`` open, ``2`` ping -> ``3`` pong, ``4``
message) carrying Socket.IO v5 ones (``0/ns,`` connect, ``2/ns,[event, data]``
event). One ``selectors`` loop drives every socket of a worker process.
"""
import json
import os
import selectors
import signal
import socket
import time
from collections import Counter

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Pong, Request, TextMessage

ENGINEIO_PATH = "/socket.io/?EIO=4&transport=websocket"
BENCH_TIMEOUT = 120  # seconds: the bound on any wait of the benchmark


class ClientError(RuntimeError):
    """A connection the server refused or dropped; the message says which and how."""


def read_frames(buffer: bytearray) -> list:
    """Take the complete WebSocket frames off the front of ``buffer``:
    [(first byte: FIN and opcode, payload)]. A server never masks its frames
    (RFC 6455, 5.1), so reading one is a header and a slice."""
    frames, start, end = [], 0, len(buffer)
    while end - start >= 2:
        length, head = buffer[start + 1] & 0x7F, 2
        if length >= 126:
            head = 4 if length == 126 else 10
            if end - start < head:
                break
            length = int.from_bytes(buffer[start + 2:start + head], "big")
        if end - start < head + length:
            break
        frames.append((buffer[start], bytes(buffer[start + head:start + head + length])))
        start += head + length
    del buffer[:start]
    return frames


FIN_TEXT, FIN_CLOSE, FIN_PING = 0x81, 0x88, 0x89


class LeanClient:
    """One Socket.IO client on a non-blocking socket. ``on_readable()`` and
    ``on_writable()`` advance it; ``connected`` says when the namespace is joined."""

    def __init__(self, host: str, port: int, namespace: str, event: str, tally: "Tally"):
        self.address = (host, port)
        self.tally = tally  # the swarm's totals: "all done?" is one comparison, not one per client
        self.namespace = namespace
        # What the server's emit of ``event`` on ``namespace`` starts with.
        self.event_prefix = f'42{namespace},["{event}"'.encode()
        self.joined_prefix = f"40{namespace},".encode()
        self.refused_prefix = f"44{namespace},".encode()
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.upgraded = False
        self.buffer = bytearray()
        self.sock = None
        self.connected = False
        self.received = 0   # events seen since the last reset
        self.started = self.finished = None  # monotonic time of connect() / namespace joined

    def connect(self) -> None:
        """Start connecting without waiting: the storm opens all its sockets at once."""
        self.started = time.monotonic()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.sock.connect_ex(self.address)

    def on_writable(self) -> None:
        """The TCP connection is up: ask for the WebSocket upgrade."""
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise ClientError(f"cannot connect to {self.address}: {os.strerror(error)}")
        host, port = self.address
        self.send(Request(host=f"{host}:{port}", target=ENGINEIO_PATH))

    def on_readable(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ClientError(f"the server at {self.address} closed a connection")
        if not self.upgraded:
            return self.on_handshake(data)
        self.buffer += data
        for first, payload in read_frames(self.buffer):
            if first == FIN_TEXT:
                self.on_packet(payload)
            elif first == FIN_PING:
                self.send(Pong(payload))
            elif first == FIN_CLOSE:
                raise ClientError(f"the server at {self.address} closed a WebSocket")
            else:  # these servers send every message in one frame
                raise ClientError(f"unexpected WebSocket frame type {first:#x}")

    def on_handshake(self, data: bytes) -> None:
        """wsproto reads the HTTP upgrade response, and any message that came with
        it; later frames go to read_frames() (see the module docstring)."""
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, AcceptConnection):
                self.upgraded = True
            elif isinstance(event, TextMessage) and event.message_finished:
                self.on_packet(event.data.encode())
            else:
                raise ClientError(f"the server refused the WebSocket: {event!r}")

    def on_packet(self, packet: bytes) -> None:
        """One Engine.IO packet from the server."""
        if packet.startswith(self.event_prefix):
            self.received += 1
            self.tally.received += 1
        elif packet == b"2":  # the server's ping: answer, or it drops us after pingTimeout
            self.send(Message(data="3"))
        elif packet.startswith(b"0{"):  # Engine.IO open: join the namespace
            self.send(Message(data=f"40{self.namespace},"))
        elif packet.startswith(self.joined_prefix):
            self.connected = True
            self.finished = time.monotonic()
            self.tally.connected += 1
        elif packet.startswith(self.refused_prefix):
            raise ClientError(f"the server refused namespace {self.namespace}: {packet!r}")

    def emit_all(self, event: str, payloads) -> None:
        """Send ``event`` once per payload (no ack asked), all frames in one write."""
        frames = [self.ws.send(Message(data=f"42{self.namespace},{json.dumps([event, data])}"))
                  for data in payloads]
        self.sock.setblocking(True)
        self.sock.sendall(b"".join(frames))

    def send(self, event) -> None:
        """Frame and send one small message (wsproto masks it, as a client must)."""
        self.sock.setblocking(True)  # a few bytes: never waits on loopback, but must all go out
        try:
            self.sock.sendall(self.ws.send(event))
        finally:
            self.sock.setblocking(False)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class Tally:
    """How many clients of a swarm have joined, and how many events they received in all."""

    def __init__(self):
        self.connected = self.received = 0


class Swarm:
    """Many LeanClients on one selector: connect them all at once, count what they receive."""

    def __init__(self, namespace: str, event: str):
        self.namespace, self.event = namespace, event
        self.clients = []
        self.tally = Tally()
        self.selector = selectors.DefaultSelector()

    def connect(self, address: tuple, count: int, timeout=BENCH_TIMEOUT) -> list:
        """Open ``count`` connections at once; returns each one's connect time in seconds."""
        new = [LeanClient(*address, self.namespace, self.event, self.tally) for _ in range(count)]
        for client in new:
            client.connect()
            self.selector.register(client.sock, selectors.EVENT_WRITE, client)
        self.clients += new
        goal = self.tally.connected + count
        self.run_until(lambda: self.tally.connected >= goal, timeout, "connect")
        return [client.finished - client.started for client in new]

    def wait_for(self, count: int, timeout=BENCH_TIMEOUT) -> float:
        """Serve the sockets until every client has received ``count`` events; when the last
        came. The server sends each event once to each client, so the total tells."""
        goal = count * len(self.clients)
        self.run_until(lambda: self.tally.received >= goal, timeout, f"{count} events each")
        finished = time.monotonic()
        if any(received != count for received in self.received()):
            raise ClientError(f"expected {count} events per client; events: clients = "
                              f"{dict(Counter(self.received()))}")
        return finished

    def reset(self) -> None:
        self.tally.received = 0
        for client in self.clients:
            client.received = 0

    def received(self) -> list:
        return [client.received for client in self.clients]

    def serve(self, timeout: float) -> None:
        """One round of the loop: read or write every socket that is ready."""
        for key, events in self.selector.select(timeout):
            client = key.data
            if events & selectors.EVENT_WRITE:
                client.on_writable()
                self.selector.modify(client.sock, selectors.EVENT_READ, client)
            else:
                client.on_readable()

    def run_until(self, done, timeout, what) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientError(f"waited {timeout} s for {what} from {len(self.clients)} "
                                  f"clients; events: clients = {dict(Counter(self.received()))}")
            self.serve(min(left, 1.0))

    def close(self) -> None:
        for client in self.clients:
            self.selector.unregister(client.sock)
            client.close()
        self.clients = []
        self.tally = Tally()


def worker(namespace, event, pipe, barrier) -> None:
    """A load-generator process: a Swarm obeying the benchmark's commands on ``pipe``.

    ("connect", address, n): wait at ``barrier`` with the other workers and the
    benchmark, then connect n clients at once; reply when they started and
    finished, and each one's connect time.
    ("expect", m): reset the counts, reply "armed", then serve until each client
    has received m events; reply the moment the last one came.
    ("close",): close every client. None: exit.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the benchmark's to handle
    swarm = Swarm(namespace, event)
    try:
        for command in iter(pipe.recv, None):
            if command[0] == "connect":
                barrier.wait(BENCH_TIMEOUT)
                started = time.monotonic()
                times = swarm.connect(command[1], command[2])
                pipe.send(("connected", started, time.monotonic(), times))
            elif command[0] == "expect":
                swarm.reset()
                pipe.send(("armed",))
                pipe.send(("received", swarm.wait_for(command[1]), sum(swarm.received())))
            elif command[0] == "close":
                swarm.close()
                pipe.send(("closed",))
    except (ClientError, OSError) as error:
        pipe.send(("error", str(error)))
    finally:
        swarm.close()


class Generator:
    """The load generator as the benchmark sees it: ``processes`` worker processes
    sharing out the clients, a barrier to start a storm, and their CPU time."""

    def __init__(self, processes: int, namespace: str, event: str):
        import multiprocessing

        import psutil

        # spawn, not fork: the benchmark has threads (its Socket.IO client), and
        # a forked copy of a process with threads can inherit a held lock.
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(processes + 1)
        self.pipes, self.processes = [], []
        for _ in range(processes):
            mine, theirs = context.Pipe()
            process = context.Process(target=worker, args=(namespace, event, theirs, self.barrier),
                                      daemon=True)
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)
        self.psutil = [psutil.Process(process.pid) for process in self.processes]

    def cpu_seconds(self) -> float:
        """User + system CPU time of all the worker processes so far."""
        return sum(sum(p.cpu_times()[:2]) for p in self.psutil)

    def ask(self, command) -> None:
        for pipe in self.pipes:
            pipe.send(command)

    def replies(self, expected: str, timeout=BENCH_TIMEOUT) -> list:
        """One reply from each worker, which must be ``expected``."""
        found = []
        for pipe, process in zip(self.pipes, self.processes):
            if not pipe.poll(timeout):
                raise ClientError(f"a load-generator process did not answer within {timeout} s "
                                  f"(waiting for {expected!r}; alive: {process.is_alive()})")
            reply = pipe.recv()
            if reply[0] != expected:
                raise ClientError(f"load generator: {reply[-1]}")
            found.append(reply[1:])
        return found

    def connect(self, address: tuple, count: int) -> tuple:
        """``count`` clients connect at once, spread over the processes.
        Returns (seconds from the start to the last connected, every connect time)."""
        share, extra = divmod(count, len(self.pipes))
        for index, pipe in enumerate(self.pipes):
            pipe.send(("connect", address, share + (index < extra)))
        self.barrier.wait(BENCH_TIMEOUT)
        replies = self.replies("connected")
        wall = max(finished for _, finished, _ in replies) - min(start for start, _, _ in replies)
        return wall, [t for _, _, times in replies for t in times]

    def arm(self, messages: int) -> None:
        """Every client starts counting ``messages`` events; returns once all are counting."""
        self.ask(("expect", messages))
        self.replies("armed")

    def last_delivery(self) -> tuple:
        """(when the last client got its last event, events received in all)."""
        replies = self.replies("received")
        return max(at for at, _ in replies), sum(count for _, count in replies)

    def close_clients(self) -> None:
        self.ask(("close",))
        self.replies("closed")

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(None)
            except OSError:  # the process is gone already
                pass
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()


def sender(address: tuple, namespace: str) -> LeanClient:
    """One more client, connected, to send the fan-out's events (close it after)."""
    swarm = Swarm(namespace, event="")
    swarm.connect(address, 1)
    [client] = swarm.clients
    swarm.selector.close()  # from now on it only sends, blocking
    return client
