"""The reporting client: interactions and heartbeats, sent by a background thread."""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Optional

log = logging.getLogger("mcp_coordinator_client")

# Whole seconds of backoff are capped here; a Retry-After from the coordinator is honoured up to it.
MAX_BACKOFF_SECONDS = 30.0
# With a report interval, a batch this large is sent without waiting for the interval; and one
# request carries at most this many reports (and MAX_BATCH_BYTES of JSON).
MAX_BATCH = 100
MAX_BATCH_BYTES = 1 << 20
# At exit, queued reports are sent for at most this long.
EXIT_FLUSH_SECONDS = 5.0
# The seed's envelope endpoint: a URL ending in it is the API's base URL plus it.
ENVELOPE_PATH = "/api/interactions"


def api_base(url: str) -> str:
    """The ingest API's base URL from the API's URL or the seed's `interaction_log_endpoint`."""
    base = url.rstrip("/")
    return base[: -len(ENVELOPE_PATH)] if base.endswith(ENVELOPE_PATH) else base


class ReportError(Exception):
    """The coordinator refused a request, or could not be reached (synchronous calls only)."""


def new_interaction_id() -> str:
    """An interaction ID in the coordinator's own format, made here so a retried start is the same
    interaction: `int_YYYYMMDD_HHMMSS_<16 hex digits>`."""
    now = datetime.now(timezone.utc)
    return f"int_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(8)}"


def sign(api_key: str, method: str, path: str, timestamp: str, body: bytes) -> str:
    """The `X-MCP-Signature` of a request: hex HMAC-SHA256, keyed with SHA-256 of the API key, of
    `METHOD "\\n" PATH "\\n" TIMESTAMP "\\n" hex(SHA-256(body))`."""
    key = hashlib.sha256(api_key.encode()).digest()
    message = f"{method}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


@dataclass
class _Request:
    path: str
    body: dict[str, Any]
    not_before: float = 0.0


@dataclass
class Interaction:
    """One interaction in progress, from `Client.interaction`."""

    client: "Client"
    interaction_id: str
    started: float = field(default_factory=time.monotonic)
    fields: dict[str, Any] = field(default_factory=dict)

    def progress(self, progress: Optional[float] = None, message: Optional[str] = None) -> None:
        self.client.progress(self.interaction_id, progress, message)

    def result(self, **fields: Any) -> None:
        """Fields of the completion: quality_score, confidence, output_size, steps_executed, ..."""
        self.fields.update(fields)


class Client:
    """Reports an MCP's interactions and heartbeats to the coordinator's ingest API.

    Reports are queued (at most `queue_size`) and sent in order by a background thread: as they
    come, or every `report_interval` seconds (the registration's `data_report_interval`; sooner once
    100 wait, on `flush()` and at exit). They are retried with backoff while the coordinator is
    unreachable or busy (5xx, 429), and dropped after `max_attempts`; a full queue drops the new
    report. Either way `dropped` counts it, and the MCP's own work never waits. What is queued when
    the program exits is sent for at most 5 seconds.

    `url` is the ingest API's URL, or the seed's `interaction_log_endpoint` (`.../api/interactions`).
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        sign_requests: bool = False,
        queue_size: int = 10_000,
        timeout: float = 5.0,
        max_attempts: int = 8,
        heartbeat_interval: Optional[float] = 30.0,
        mcp_version: Optional[str] = None,
        report_interval: float = 0.0,
        batch: int = MAX_BATCH,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, not {url!r}")
        if not api_key:
            raise ValueError("api_key is empty: use the key from the MCP's `<name>-mcp-key` Secret")
        self.url = api_base(url)
        self._report_interval = max(0.0, report_interval)
        self._batch = max(1, min(int(batch), 500))
        self._send_now = threading.Event()
        self._exit_hook = False
        self._api_key = api_key
        self._sign = sign_requests
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._heartbeat_interval = heartbeat_interval
        self._mcp_version = mcp_version
        self._queue: "queue.Queue[Optional[_Request]]" = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closing = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self.sent = 0
        self.dropped = 0
        self.last_heartbeat: Optional[dict[str, Any]] = None

    @classmethod
    def from_env(cls, **options: Any) -> "Client":
        """A client from `MCP_COORDINATOR_URL` and `MCP_COORDINATOR_API_KEY` (as the chart's NOTES
        and the MCP's key Secret give them)."""
        url = os.environ.get("MCP_COORDINATOR_URL", "")
        key = os.environ.get("MCP_COORDINATOR_API_KEY", "")
        if not url or not key:
            raise ValueError("set MCP_COORDINATOR_URL and MCP_COORDINATOR_API_KEY")
        return cls(url, key, **options)

    # Reports -------------------------------------------------------------------------------------

    def start(
        self,
        request_type: str,
        *,
        interaction_id: Optional[str] = None,
        parameters: Optional[dict[str, Any]] = None,
        **request_fields: Any,
    ) -> str:
        """Reports the start of an interaction; returns its ID (made here, so retries are safe)."""
        interaction_id = interaction_id or new_interaction_id()
        request_data: dict[str, Any] = {"request_type": request_type, **request_fields}
        if parameters is not None:
            request_data["parameters"] = parameters
        body: dict[str, Any] = {"interaction_id": interaction_id, "request_data": request_data}
        if self._mcp_version:
            body["metadata"] = {"mcp_version": self._mcp_version}
        self._enqueue("/v1/interactions", body)
        return interaction_id

    def progress(
        self, interaction_id: str, progress: Optional[float] = None, message: Optional[str] = None
    ) -> None:
        body: dict[str, Any] = {}
        if progress is not None:
            body["progress"] = min(max(float(progress), 0.0), 1.0)
        if message is not None:
            body["message"] = message
        self._enqueue(f"/v1/interactions/{interaction_id}/progress", body)

    def complete(self, interaction_id: str, **fields: Any) -> None:
        """Reports success (unless `success=False`): processing_time (seconds), quality_score,
        confidence, output_size, steps_executed, adapter_used, ..."""
        body = {"success": True, **fields}
        self._enqueue(f"/v1/interactions/{interaction_id}/complete", body)

    def fail(
        self,
        interaction_id: str,
        error_code: str,
        error_message: Optional[str] = None,
        **fields: Any,
    ) -> None:
        """Reports a failure with its code (e.g. `OCR_TIMEOUT`)."""
        body: dict[str, Any] = {"error_code": error_code, **fields}
        if error_message is not None:
            body["error_message"] = error_message[:4000]
        self._enqueue(f"/v1/interactions/{interaction_id}/error", body)

    @contextmanager
    def interaction(self, request_type: str, **start_fields: Any) -> Iterator[Interaction]:
        """Times a block as one interaction: completes it when the block ends, fails it with the
        exception's class as the error code when the block raises (and re-raises)."""
        call = Interaction(self, self.start(request_type, **start_fields))
        try:
            yield call
        except BaseException as error:
            self.fail(
                call.interaction_id,
                error_code(error),
                str(error) or type(error).__name__,
                processing_time=time.monotonic() - call.started,
            )
            raise
        fields = {"processing_time": time.monotonic() - call.started, **call.fields}
        self.complete(call.interaction_id, **fields)

    # Heartbeats ----------------------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        """Sends a heartbeat now and answers the coordinator's reply; raises ReportError."""
        status, answer = self._post("/v1/heartbeat", {})
        if status >= 300:
            raise ReportError(f"heartbeat refused ({status}): {answer}")
        self.last_heartbeat = answer
        return answer

    # Reads (the seed's) ----------------------------------------------------------------------------

    def get_interaction_history(self, mcp_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The latest `limit` interactions of `mcp_id` (this key's own MCP), newest first, in the
        seed's standard record shape; raises ReportError."""
        limit = max(1, min(int(limit), 1000))
        answer = self._get(f"/v1/mcps/{_part(mcp_id)}/interactions?limit={limit}")
        return list(answer.get("interactions") or [])

    def get_performance_metrics(self, mcp_id: str, time_range: str = "last_24h") -> dict[str, Any]:
        """`mcp_id`'s performance over `time_range` (`last_15m`, `last_1h`, `last_24h`, `last_7d`):
        count, success rate, latency percentiles, errors by code; raises ReportError."""
        answer = self._get(f"/v1/mcps/{_part(mcp_id)}/metrics?range={_part(time_range)}")
        return dict(answer.get("metrics") or {})

    # Lifecycle -----------------------------------------------------------------------------------

    def start_background(self) -> "Client":
        """Starts the sender thread (reports start it too), which also sends heartbeats."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._closing.clear()
                self._thread = threading.Thread(
                    target=self._run, name="mcp-coordinator-client", daemon=True
                )
                self._thread.start()
                if not self._exit_hook:
                    # The thread is a daemon: without this, what is queued at exit is lost.
                    atexit.register(self.close, EXIT_FLUSH_SECONDS)
                    self._exit_hook = True
        return self

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every queued report was sent (or dropped); False if `timeout` passed."""
        deadline = time.monotonic() + timeout
        self._send_now.set()
        with self._idle:
            while self._queue.unfinished_tasks > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Sends what is queued (for at most `timeout`) and stops the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self.flush(timeout)
        self._closing.set()
        self._send_now.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        thread.join(timeout)

    def __enter__(self) -> "Client":
        return self.start_background()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # Internals -----------------------------------------------------------------------------------

    def _enqueue(self, path: str, body: dict[str, Any]) -> None:
        self.start_background()
        try:
            self._queue.put_nowait(_Request(path, body))
            if self._report_interval and self._queue.qsize() >= MAX_BATCH:
                self._send_now.set()
        except queue.Full:
            with self._lock:
                self.dropped += 1
            log.warning("report queue full; dropped a report to %s", path)

    def _run(self) -> None:
        next_heartbeat = time.monotonic()
        next_send = time.monotonic() + self._report_interval
        while not self._closing.is_set() or (self._report_interval and not self._queue.empty()):
            if self._heartbeat_interval and time.monotonic() >= next_heartbeat:
                try:
                    self.heartbeat()
                except (ReportError, OSError) as error:
                    log.warning("heartbeat failed: %s", error)
                next_heartbeat = time.monotonic() + self._heartbeat_interval
            if self._report_interval:
                if not self._drain_on_interval(next_send, next_heartbeat):
                    continue
                next_send = time.monotonic() + self._report_interval
                if self._stopped:
                    break
                continue
            wait = 0.5
            if self._heartbeat_interval:
                wait = max(0.0, min(wait, next_heartbeat - time.monotonic()))
            try:
                request = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            # Whatever else is queued by now goes with it, as one batch.
            requests = [request]
            while request is not None and len(requests) < self._batch:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                requests.append(request)
            if not self._send_all(requests):
                break

    _stopped = False

    def _send_all(self, requests: list[Optional[_Request]]) -> bool:
        """Sends `requests` in order (a lone one on its own endpoint, more as signed batches);
        False once the stop marker is among them."""
        going = True
        if requests and requests[-1] is None:
            requests.pop()
            going = False
        while requests:
            batch, size = [], 2
            for request in requests[: self._batch]:
                item = json.dumps(_batch_item(request), separators=(",", ":"))
                if batch and size + len(item) + 1 > MAX_BATCH_BYTES:
                    break
                batch.append((request, item))
                size += len(item) + 1
            requests = requests[len(batch):]
            if len(batch) == 1:
                self._deliver(batch[0][0])
            else:
                self._deliver_batch("[" + ",".join(item for _, item in batch) + "]", len(batch))
            for _ in batch:
                self._done()
        if not going:
            self._done()
        return going

    def _drain_on_interval(self, next_send: float, next_heartbeat: float) -> bool:
        """With a report interval: waits for it (or a flush, a full batch, closing), then sends
        everything queued. False while it is not yet time."""
        now = time.monotonic()
        if now < next_send and not self._send_now.is_set() and not self._closing.is_set():
            wake = next_send
            if self._heartbeat_interval:
                wake = min(wake, next_heartbeat)
            self._send_now.wait(max(0.0, min(wake - now, 0.5)))
            return False
        self._send_now.clear()
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return True
            batch = [request]
            while request is not None:
                try:
                    request = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(request)
            if not self._send_all(batch):
                self._stopped = True
            return True

    def _done(self) -> None:
        with self._idle:
            self._queue.task_done()
            self._idle.notify_all()

    def _deliver(self, request: _Request) -> None:
        def done(answer: Any) -> None:
            with self._lock:
                self.sent += 1

        self._with_retries(
            lambda: self._post(request.path, request.body), 1, done, f"report to {request.path}"
        )

    def _deliver_batch(self, body: str, count: int) -> None:
        """One signed batch (the ingest server asks batches to be signed by default), retried whole
        while the coordinator is away or busy; the reports it refuses are counted as dropped."""

        def done(answer: Any) -> None:
            accepted = answer.get("accepted", count) if isinstance(answer, dict) else count
            with self._lock:
                self.sent += accepted
                self.dropped += count - accepted
            if accepted < count:
                log.warning("the coordinator refused %d reports of a batch", count - accepted)

        post = lambda: self._post_raw("/v1/interactions:batch", body.encode(), signed=True)
        self._with_retries(post, count, done, f"a batch of {count} reports")

    def _with_retries(self, post: Any, count: int, done: Any, what: str) -> None:
        """Sends with `post` until it is taken (`done` with the answer), refused for good, or out of
        attempts (then `count` reports are dropped); retries what may succeed later: no answer, 5xx,
        429 (after its Retry-After), 401 (a batch's key may have been rotated)."""
        backoff, attempts = 0.1, 0
        while True:
            attempts += 1
            try:
                status, answer = post()
            except OSError as error:
                status, answer = 0, {"error": str(error)}
            if 200 <= status < 300:
                done(answer)
                return
            retryable = status in (0, 429) or status >= 500 or (status == 401 and count > 1)
            if not retryable or attempts >= self._max_attempts or self._closing.is_set():
                with self._lock:
                    self.dropped += count
                log.warning("%s dropped (%s): %s", what, status or "unreachable", answer)
                return
            delay = backoff
            retry_after = answer.get("_retry_after") if isinstance(answer, dict) else None
            if retry_after:
                delay = float(retry_after)
            time.sleep(min(delay, MAX_BACKOFF_SECONDS))
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _get(self, path: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        request = urllib.request.Request(self.url + path, headers=headers, method="GET")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                answer = _json(response.read())
        except urllib.error.HTTPError as error:
            answer = _json(error.read())
            message = answer.get("error", {}).get("message") if isinstance(answer, dict) else None
            raise ReportError(f"the coordinator refused ({error.code}): {message or answer}") from None
        except OSError as error:
            raise ReportError(f"cannot reach the coordinator at {self.url}: {error}") from None
        return answer if isinstance(answer, dict) else {}

    def _post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        return self._post_raw(path, json.dumps(body, separators=(",", ":")).encode(), self._sign)

    def _post_raw(self, path: str, data: bytes, signed: bool) -> tuple[int, Any]:
        headers = {
            "Authorization": f"Bearer {self._api_key}",
            "Content-Type": "application/json",
        }
        if signed:
            timestamp = str(int(time.time()))
            headers["X-MCP-Timestamp"] = timestamp
            headers["X-MCP-Signature"] = sign(self._api_key, "POST", path, timestamp, data)
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            answer = _json(error.read())
            if isinstance(answer, dict) and error.headers.get("Retry-After"):
                answer["_retry_after"] = error.headers["Retry-After"]
            return error.code, answer


def error_code(error: BaseException) -> str:
    """An error code from an exception: its class name in upper snake case (`ValueError` →
    `VALUE_ERROR`), at most 64 characters."""
    name = type(error).__name__
    out = []
    for i, char in enumerate(name):
        if char.isupper() and i > 0 and not name[i - 1].isupper():
            out.append("_")
        out.append(char.upper() if char.isalnum() else "_")
    return "".join(out)[:64] or "ERROR"


def _batch_item(request: _Request) -> dict[str, Any]:
    """A queued report as an item of `POST /v1/interactions:batch`: its body, its kind and its
    interaction (`/v1/interactions` starts; `/v1/interactions/{id}/{kind}` the rest)."""
    parts = request.path.strip("/").split("/")
    if len(parts) == 4:
        return {"kind": parts[3], "interaction_id": parts[2], **request.body}
    return {"kind": "start", **request.body}


def _part(value: str) -> str:
    """An ID or range name as it goes into a URL, refused when it is anything else."""
    text = str(value)
    if not text or len(text) > 128 or not all(c.isalnum() or c in "_-." for c in text):
        raise ValueError(f"{text[:64]!r} is not an ID or range name (letters, digits, '_', '-', '.')")
    return urllib.parse.quote(text)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {"body": raw[:300].decode(errors="replace")}
