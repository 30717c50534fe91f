"""The client's promises to the MCP it runs in, against a local HTTP server standing in for the
coordinator: it never blocks, it retries what may succeed later, it counts what it drops."""

import json
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from mcp_coordinator_client import Client, error_code


class Coordinator:
    """Answers each POST with the next scripted status (then 202), recording what it got."""

    def __init__(self, statuses=(), delay=0.0):
        self.statuses = list(statuses)
        self.delay = delay
        self.received = []
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(owner.delay)
                owner.requests.append((self.path, self.headers))
                if self.path == "/v1/interactions:batch":
                    # A batch: each item recorded as the request it stands for.
                    for item in json.loads(body):
                        kind = item.pop("kind")
                        if kind == "start":
                            path = "/v1/interactions"
                        else:
                            path = f"/v1/interactions/{item.pop('interaction_id')}/{kind}"
                        owner.received.append((path, item, self.headers))
                else:
                    owner.received.append((self.path, json.loads(body), self.headers))
                status = owner.statuses.pop(0) if owner.statuses else 202
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": {"message": "scripted"}}' if status >= 300 else b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()


class ClientTest(unittest.TestCase):
    def client(self, coordinator, **options):
        options.setdefault("heartbeat_interval", None)
        client = Client(coordinator.url, "mcpk_test", **options)
        self.addCleanup(client.close, 2.0)
        self.addCleanup(coordinator.close)
        return client

    def test_an_interaction_block_reports_start_and_completion_with_its_time(self):
        coordinator = Coordinator()
        client = self.client(coordinator)
        with client.interaction("ocr", parameters={"language": "en"}) as call:
            time.sleep(0.02)
            call.result(quality_score=0.9)
        self.assertTrue(client.flush(5))
        (start, done) = coordinator.received
        self.assertEqual(start[0], "/v1/interactions")
        self.assertEqual(start[1]["request_data"], {"request_type": "ocr", "parameters": {"language": "en"}})
        interaction = start[1]["interaction_id"]
        self.assertEqual(done[0], f"/v1/interactions/{interaction}/complete")
        self.assertGreaterEqual(done[1]["processing_time"], 0.02)
        self.assertEqual(done[1]["quality_score"], 0.9)
        self.assertEqual(start[2]["Authorization"], "Bearer mcpk_test")

    def test_a_failing_block_is_reported_as_an_error_and_still_raises(self):
        coordinator = Coordinator()
        client = self.client(coordinator)
        with self.assertRaises(TimeoutError):
            with client.interaction("ocr"):
                raise TimeoutError("scanner did not answer")
        client.flush(5)
        failed = coordinator.received[1]
        self.assertTrue(failed[0].endswith("/error"))
        self.assertEqual(failed[1]["error_code"], "TIMEOUT_ERROR")
        self.assertEqual(failed[1]["error_message"], "scanner did not answer")

    def test_unavailable_and_busy_answers_are_retried_and_the_report_arrives_once(self):
        coordinator = Coordinator(statuses=[503, 429])
        client = self.client(coordinator)
        client.start("ocr", interaction_id="int_retry")
        self.assertTrue(client.flush(10))
        self.assertEqual(len(coordinator.received), 3)
        self.assertEqual({r[1]["interaction_id"] for r in coordinator.received}, {"int_retry"})
        self.assertEqual((client.sent, client.dropped), (1, 0))

    def test_a_refused_report_is_dropped_not_retried(self):
        coordinator = Coordinator(statuses=[400])
        client = self.client(coordinator)
        client.complete("int_x", processing_time=1.0)
        client.flush(5)
        self.assertEqual(len(coordinator.received), 1)
        self.assertEqual(client.dropped, 1)

    def test_a_full_queue_drops_new_reports_without_blocking_the_caller(self):
        coordinator = Coordinator(delay=0.2)
        client = self.client(coordinator, queue_size=5)
        began = time.monotonic()
        for n in range(50):
            client.start("ocr", interaction_id=f"int_{n}")
        self.assertLess(time.monotonic() - began, 0.5, "reporting blocked the caller")
        self.assertGreaterEqual(client.dropped, 40)
        client.flush(10)
        self.assertEqual(client.sent + client.dropped, 50)

    def test_unreachable_coordinators_cost_a_bounded_number_of_attempts(self):
        client = Client("http://127.0.0.1:9", "mcpk_test", heartbeat_interval=None, max_attempts=2)
        self.addCleanup(client.close, 2.0)
        client.start("ocr")
        self.assertTrue(client.flush(10))
        self.assertEqual(client.dropped, 1)

    def test_signed_requests_carry_a_timestamp_and_a_signature(self):
        coordinator = Coordinator()
        client = self.client(coordinator, sign_requests=True)
        client.start("ocr")
        client.flush(5)
        headers = coordinator.received[0][2]
        self.assertRegex(headers["X-MCP-Signature"], "^[0-9a-f]{64}$")
        self.assertAlmostEqual(int(headers["X-MCP-Timestamp"]), time.time(), delta=5)

    def test_heartbeats_are_sent_on_the_interval(self):
        coordinator = Coordinator()
        client = self.client(coordinator, heartbeat_interval=0.2)
        client.start_background()
        time.sleep(0.7)
        beats = [r for r in coordinator.received if r[0] == "/v1/heartbeat"]
        self.assertGreaterEqual(len(beats), 3)

    def test_error_codes_come_from_exception_classes(self):
        self.assertEqual(error_code(ValueError()), "VALUE_ERROR")
        self.assertEqual(error_code(KeyError()), "KEY_ERROR")

    def test_bad_settings_are_refused_up_front(self):
        with self.assertRaises(ValueError):
            Client("coordinator:8081", "k")
        with self.assertRaises(ValueError):
            Client("http://coordinator:8081", "")


    def test_reports_queued_together_go_as_one_signed_batch_and_a_lone_one_on_its_own(self):
        coordinator = Coordinator(delay=0.2)
        client = self.client(coordinator)
        first = client.start("ocr")           # sent alone while the others queue behind it
        time.sleep(0.05)
        for _ in range(5):
            with client.interaction("ocr") as call:
                call.result(quality_score=0.9)
        self.assertTrue(client.flush(10))
        paths = [path for path, _ in coordinator.requests]
        self.assertEqual(paths, ["/v1/interactions", "/v1/interactions:batch"], paths)
        batch_headers = coordinator.requests[1][1]
        self.assertIn("X-MCP-Signature", batch_headers)
        self.assertEqual(len(coordinator.received), 11)
        self.assertEqual(coordinator.received[0][1]["interaction_id"], first)
        self.assertEqual(client.sent, 11)
        self.assertEqual(client.dropped, 0)


if __name__ == "__main__":
    unittest.main()
