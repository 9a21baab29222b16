#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets from real client traffic, so that libFuzzer
starts from well-formed requests and batches instead of discovering the Kafka framing
by itself.

    python3 fuzz/make_seeds.py PATH/TO/cairn

starts `cairn serve` on a loopback port behind a recording proxy (the broker advertises
the proxy's address, so every connection goes through it), runs the client scripts of
tests/python and tests/js through it, and writes:

- fuzz/seeds/request_decode/: request frames without their size prefix, a few per
  (API key, version) pair seen;
- fuzz/seeds/batch_validate/: the start of each partition's first segment (whole record
  batches, every codec) of a topic written by kafka-python.

`just fuzz` copies them into the corpus directory (git-ignored) before running.
"""

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PER_API_VERSION = 3
SEGMENT_PREFIX_BYTES = 64 * 1024


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Recorder:
    def __init__(self):
        self.frames = {}  # (api_key, version) -> [frame]
        self.seen = set()  # (api_key, version) pairs since the last `take_seen`
        self.lock = threading.Lock()

    def take_seen(self):
        with self.lock:
            seen, self.seen = self.seen, set()
        return seen

    def add(self, frame):
        if len(frame) < 4:
            return
        key = struct.unpack(">hh", frame[:4])
        with self.lock:
            self.seen.add(key)
            kept = self.frames.setdefault(key, [])
            if len(kept) < PER_API_VERSION and frame not in kept:
                kept.append(frame)


def pipe(src, dst, recorder):
    buf = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            if recorder is not None:
                buf += data
                while len(buf) >= 4:
                    (size,) = struct.unpack(">i", buf[:4])
                    if len(buf) < 4 + size:
                        break
                    recorder.add(buf[4:4 + size])
                    buf = buf[4 + size:]
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(listen_port, broker_port, recorder):
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(64)

    def accept():
        while True:
            client, _ = server.accept()
            try:
                upstream = socket.create_connection(("127.0.0.1", broker_port))
            except OSError:  # the broker has stopped
                client.close()
                continue
            threading.Thread(target=pipe, args=(client, upstream, recorder), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client, None), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cairn = sys.argv[1]
    recorder = Recorder()
    broker_port, proxy_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "data")
        broker = subprocess.Popen(
            [cairn, "serve", "--data-dir", data_dir, "--listen", f"127.0.0.1:{broker_port}",
             "--advertise", f"127.0.0.1:{proxy_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", broker_port)).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        sys.exit("the broker did not start")
                    time.sleep(0.1)
            proxy(proxy_port, broker_port, recorder)
            bootstrap = f"127.0.0.1:{proxy_port}"
            runs = [
                ["python3", "tests/python/kafka_python_client.py", bootstrap],
                ["python3", "tests/python/confluent_kafka_client.py", bootstrap],
                ["node", "tests/js/kafkajs_client.js", bootstrap],
            ]
            for run in runs:
                print("seeds:", " ".join(run), flush=True)
                time.sleep(0.5)
                recorder.take_seen()
                subprocess.run(run, cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
                time.sleep(0.5)
                print("  sent (API key, version):", sorted(recorder.take_seen()), flush=True)
            # Batches as stored, one topic per codec, kept (the scripts delete theirs).
            # kafka-python, because librdkafka sends lz4 uncompressed to Cairn for now.
            from kafka import KafkaProducer
            for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
                p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False,
                                  compression_type=None if codec == "none" else codec,
                                  linger_ms=5)
                for i in range(20):
                    p.send(f"seed-{codec}", key=f"k{i}".encode(),
                           value=f"value {i} ".encode() * (1 + 10 * i),
                           headers=[("h", str(i).encode())])
                p.flush(30)
                p.close()
            time.sleep(0.5)
        finally:
            broker.terminate()
            broker.wait()

        out = os.path.join(ROOT, "fuzz", "seeds", "request_decode")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        count = 0
        for (api_key, version), frames in sorted(recorder.frames.items()):
            for frame in frames:
                digest = hashlib.sha1(frame).hexdigest()[:12]
                with open(os.path.join(out, f"api{api_key}-v{version}-{digest}"), "wb") as f:
                    f.write(frame)
                count += 1
        print(f"seeds: {count} request frames for {len(recorder.frames)} (API, version) pairs")

        out = os.path.join(ROOT, "fuzz", "seeds", "batch_validate")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        count = 0
        for entry in sorted(os.listdir(data_dir)):
            if not entry.startswith("seed-"):
                continue
            for name in sorted(os.listdir(os.path.join(data_dir, entry))):
                if name.endswith(".log"):
                    with open(os.path.join(data_dir, entry, name), "rb") as f:
                        data = f.read(SEGMENT_PREFIX_BYTES)
                    if data:
                        with open(os.path.join(out, f"{entry}-{name}"), "wb") as f:
                            f.write(data)
                        count += 1
        print(f"seeds: {count} segment prefixes")


if __name__ == "__main__":
    main()
