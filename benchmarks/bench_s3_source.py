"""`backfill validate` of Parquet parts on an S3-compatible server: memory and rate.

    .venv/bin/python benchmarks/bench_s3_source.py --rows 10m --parts 20

Makes one orders file with `make_orders.py` (cached in benchmarks/data/), splits it into
`--parts` Parquet files, puts them under `s3://bench/orders/` on moto's S3 server (its own
thread in this process, 127.0.0.1), then runs `backfill validate s3://bench/orders/` in a
subprocess under GNU time with AWS_ENDPOINT_URL pointing at the server. Prints one JSON
object: rows, parts, seconds, rows/s, peak RSS of the backfill process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent


def parse_rows(text: str) -> int:
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1].lower(), 1)
    return int(float(text.rstrip("kKmM")) * scale)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=parse_rows, default=10_000_000)
    parser.add_argument("--parts", type=int, default=20)
    args = parser.parse_args()
    data = HERE / "data" / f"orders_{args.rows}.parquet"
    if not data.exists():
        data.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "make_orders.py"), "--rows", str(args.rows),
                        "--out", str(data)], check=True)  # fmt: skip
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://{host}:{port}",
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
    os.environ.update(env)
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="bench")
    reader = pq.ParquetFile(data)
    per_part = -(-args.rows // args.parts)
    part, rows_in_part, writer, sink = 0, 0, None, None

    def flush() -> None:
        nonlocal writer, sink, part, rows_in_part
        if writer is not None and sink is not None:
            writer.close()
            key = f"orders/part-{part:03d}.parquet"
            client.put_object(Bucket="bench", Key=key, Body=sink.getvalue().to_pybytes())
            part, rows_in_part, writer, sink = part + 1, 0, None, None

    for batch in reader.iter_batches(batch_size=50_000):
        if writer is None:
            sink = pa.BufferOutputStream()
            writer = pq.ParquetWriter(sink, batch.schema)
        writer.write_batch(batch)
        rows_in_part += batch.num_rows
        if rows_in_part >= per_part:
            flush()
    flush()
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "backfill", "validate",
               "s3://bench/orders/", "-m", str(HERE / "map.yaml"), "--json"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    server.stop()
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    result = json.loads(done.stdout)
    print(json.dumps({
        "rows": result["read"], "parts": part, "would_send": result["would_send"],
        "seconds": round(elapsed, 1), "rows_per_second": round(result["read"] / elapsed),
        "peak_rss_mb": round(int(peak.group(1)) / 1024) if peak else None,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
